"""`vmbuild cache prune`'s bad values are a bad command line: one line, status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--max-size", "-1", "is not a size"),
        ("--max-size", "1e3", "is not a size"),
        ("--max-size", "10X", "is not a size"),
        ("--max-size", "", "is not a size"),
        ("--older-than", "-1", "must not be negative"),
        ("--older-than", "nan", "is not a number of days"),
        ("--older-than", "inf", "is not a number of days"),
    ],
)
def test_a_bad_prune_limit_is_status_2(tmp_path: Path, option: str, value: str, says: str) -> None:
    (tmp_path / "kept").mkdir()
    proc = vmbuild_cli(
        "cache", "prune", f"{option}={value}", env={"VMBUILD_CACHE_DIR": str(tmp_path)}
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"vmbuild: error: {option} ") and says in line, line
    assert (tmp_path / "kept").is_dir()
