"""The wheel ships guest/ and kernels/ and an installed copy finds them.

The suite itself runs from the editable install (``pip install -e .``), so every VM test
already reads guest/ and kernels/ through that; this builds a wheel from a clean copy of
the checkout and installs it into a fresh venv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("pyproject.toml", "vmbuild", "guest", "kernels")
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

FIND = """
import hashlib, sys, vmbuild
from vmbuild import resources
names = sys.argv[1:]
for name in names:
    data = resources.kernel_file(name[8:]) if name.startswith("kernels/") else (
        resources.guest_file(name[6:]))
    print(name, hashlib.sha256(data).hexdigest())
print("shadow", vmbuild.SHADOW_SETUP == resources.shadow_setup())
print("nixshell", "genericBuild()" in resources.nixshell_file("setup.sh"))
print("from", resources.__file__)
"""


def _files(top: str) -> list[str]:
    base = ROOT / top
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def _run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, **PIP_ENV}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.tools
def test_the_wheel_holds_guest_and_kernels_and_an_install_finds_them(tmp_path: Path) -> None:
    src = tmp_path / "checkout"
    src.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    # as `pip install .` does: setuptools from the configured index, in an isolated build
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        tmp_path,
    )
    (wheel,) = wheels.glob("vmbuild-*.whl")

    guest, kernels, code = _files("guest"), _files("kernels"), _files("vmbuild")
    assert {"guest/init", "guest/root-step", "guest/shadow-setup.sh"} <= set(guest)
    assert "kernels/guest.config" in kernels
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in (*guest, *kernels):
            top, _, rest = name.partition("/")
            assert zf.read(f"vmbuild/_{top}/{rest}") == (ROOT / name).read_bytes(), name
    # every module and package of vmbuild/ (a package missing from pyproject's list shows here)
    assert set(code) <= names, sorted(set(code) - names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path)
    wanted = [n for n in (*guest, *kernels) if not n.endswith("__init__.py")]
    out = _run([str(python), "-I", "-c", FIND, *wanted], tmp_path).splitlines()
    expect = [f"{n} {hashlib.sha256((ROOT / n).read_bytes()).hexdigest()}" for n in wanted]
    assert out[: len(wanted)] == expect
    assert out[len(wanted)] == "shadow True"
    assert out[len(wanted) + 1] == "nixshell True"  # vmbuild/nixshell/ is package data
    assert out[-1].startswith(f"from {venv}/lib/"), out[-1]
