"""The README's examples run as written: the Python API example from any directory, the
quick start in an empty one; and the README names no file outside the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO

README = (REPO / "README.md").read_text()


def block(section: str, language: str) -> str:
    """The first ``language`` code block after the heading ``section``."""
    after = README.split(f"\n{section}\n", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", after, re.S)
    assert found, f"no {language} block under {section}"
    return found.group(1)


def test_the_python_api_example_runs_from_any_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", block("## Python API", "python")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out, tag, digest, layers = proc.stdout.split()
    assert Path(out).is_file() and tag == "api" and digest.startswith("sha256:")
    assert layers == "1"


@pytest.mark.vm  # its runAsRoot boots the build VM
def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    script = block("## Quick start: your own image", "sh")
    # loading and running need a container runtime; the rest runs as it is
    runnable = "\n".join(
        ln for ln in script.splitlines() if not ln.startswith(("vmbuild load", "podman run"))
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", runnable],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hello-1.tar.gz" in proc.stdout and "names: hello:1" in proc.stdout
    assert (tmp_path / "hello-1.tar.gz").is_file()


def test_the_readme_names_no_file_outside_the_repository() -> None:
    for outside in ("/work/", "/home/", "/tmp/", "../"):
        assert outside not in README, outside
