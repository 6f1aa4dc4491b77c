"""Running the vmbuild command line from tests: the repository root and ``vmbuild_cli``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def vmbuild_cli(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vmbuild ARGS`` and capture its output as text."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vmbuild", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=900,
        check=False,
    )


def write_spec(directory: Path, text: str, name: str = "spec.toml") -> Path:
    """Write a spec file ``name`` holding ``text`` in ``directory``; its path."""
    spec = directory / name
    spec.write_text(text)
    return spec


def build_ok(spec: Path, out: Path, *args: str) -> None:
    """``vmbuild build SPEC --out OUT ARGS``, which must succeed."""
    proc = vmbuild_cli("build", spec, "--out", out, *args)
    assert proc.returncode == 0, proc.stderr


def error_and_output(stderr: str) -> tuple[str, list[str]]:
    """The one ``vmbuild: error:`` line in ``stderr`` and the failed step's output lines
    the CLI shows under it (indented by two spaces), without the indent."""
    lines = stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("vmbuild: error:")]
    assert len(starts) == 1, stderr
    shown = []
    for ln in lines[starts[0] + 1 :]:
        assert ln.startswith("  "), stderr
        shown.append(ln[2:])
    return lines[starts[0]], shown
