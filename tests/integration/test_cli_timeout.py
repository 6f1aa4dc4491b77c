"""`vmbuild build --timeout` and VMBUILD_TIMEOUT reach the build: an hour by default,
0 for no limit, the option over the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import vmbuild_cli
from vmbuild import timeouts
from vmbuild.builders.result import BuildResult


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The limit each build saw (the builder replaced by one that only records it)."""
    limits: list[float | None] = []

    def record(loaded: Any, out: Path, opts: Any) -> BuildResult:
        limits.append(timeouts.step_timeout())
        raise SystemExit(0)

    monkeypatch.setattr("vmbuild.cli.build.build", record)
    return limits


@pytest.mark.parametrize(
    ("option", "env", "limit"),
    [
        (None, None, 3600.0),
        (None, "", 3600.0),
        (None, "0", None),
        (None, "90", 90.0),
        ("0", None, None),
        ("0", "90", None),
        ("20", "0", 20.0),
    ],
)
def test_the_limit_a_build_gets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seen: list[float | None],
    option: str | None,
    env: str | None,
    limit: float | None,
) -> None:
    monkeypatch.delenv(timeouts.ENV, raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "x"\ntag = "1"\n')
    args: list[str | Path] = ["build", spec, "--out", tmp_path / "o.tar"]
    if option is not None:
        args += ["--timeout", option]
    proc = vmbuild_cli(*args, env={} if env is None else {timeouts.ENV: env})
    assert proc.returncode == 0, proc.stderr
    assert seen == [limit]


def test_help_says_the_default_and_how_to_lift_it() -> None:
    text = " ".join(vmbuild_cli("build", "--help").stdout.split())
    assert "default: $VMBUILD_TIMEOUT, else 3600" in text
    assert "0 for no limit" in text
