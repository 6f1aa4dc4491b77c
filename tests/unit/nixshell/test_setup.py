"""The nix-shell setup file's phases, run by the host's bash as buildDerivation runs
them (``set -eo pipefail``, the setup file sourced, ``genericBuild``)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from vmbuild.resources import nixshell_file


def generic_build(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    setup = tmp_path / "setup"
    setup.write_text(nixshell_file("setup.sh"))
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    full = {"PATH": os.environ["PATH"], "out": str(tmp_path / "out"), "NIX_BUILD_CORES": "1"}
    return subprocess.run(
        ["bash", "-c", f'set -eo pipefail; . "{setup}"; genericBuild'],
        cwd=build,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def phases(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[-1] for line in proc.stdout.splitlines() if "Running phase" in line]


def source_dir(tmp_path: Path) -> Path:
    src = tmp_path / "tool-1"
    src.mkdir()
    (src / "Makefile").write_text(
        "all:\n\techo made > made\ncheck:\n\techo checked\n"
        "install:\n\tmkdir -p $(out)/share\n\tcp made $(out)/share/\n"
    )
    (src / "Makefile").chmod(0o444)
    return src


def test_default_phases_in_stdenv_order_with_a_directory_source(tmp_path: Path) -> None:
    src = source_dir(tmp_path)
    proc = generic_build(tmp_path, src=str(src))
    assert proc.returncode == 0, proc.stderr
    assert phases(proc) == [
        "unpackPhase",
        "patchPhase",
        "configurePhase",
        "buildPhase",
        "installPhase",
        "fixupPhase",
    ]
    assert (tmp_path / "out" / "share" / "made").read_text() == "made\n"
    assert os.access(tmp_path / "build" / "tool-1" / "Makefile", os.W_OK)  # made writable
    assert "checked" not in proc.stdout  # doCheck unset


def test_overrides_hooks_and_switches(tmp_path: Path) -> None:
    src = source_dir(tmp_path)
    proc = generic_build(
        tmp_path,
        src=str(src),
        doCheck="1",
        dontFixup="1",
        preBuild="echo pre-build",
        postBuild="echo post-build",
        # an overriding phase replaces the default, hooks and all, as in stdenv
        installPhase='runHook preInstall; echo "custom install in $(basename "$PWD")"',
        preInstall="echo pre-install",
        postInstall="echo not-run",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.index("pre-build") < lines.index("echo made > made") < lines.index("post-build")
    assert lines.index("checked") < lines.index("pre-install")
    assert lines.index("pre-install") < lines.index("custom install in tool-1")
    assert "not-run" not in lines and not (tmp_path / "out").exists()
    assert phases(proc)[-2:] == ["checkPhase", "installPhase"]


def test_a_tarball_phases_list_and_a_failing_phase(tmp_path: Path) -> None:
    src = source_dir(tmp_path)
    with tarfile.open(tmp_path / "t.tar.xz", "w:xz") as tar:
        tar.add(src, "tool-1")
    proc = generic_build(
        tmp_path, src=str(tmp_path / "t.tar.xz"), phases="unpackPhase buildPhase checkPhase"
    )
    assert proc.returncode == 0, proc.stderr
    assert phases(proc) == ["unpackPhase", "buildPhase"]  # checkPhase still needs doCheck
    failing = generic_build(tmp_path, dontUnpack="1", buildPhase="false; echo not-reached")
    assert failing.returncode != 0 and "not-reached" not in failing.stdout


def test_build_command_replaces_the_phases(tmp_path: Path) -> None:
    proc = generic_build(tmp_path, buildCommand='mkdir -p "$out" && echo only > "$out/f"')
    assert proc.returncode == 0, proc.stderr
    assert phases(proc) == [] and (tmp_path / "out" / "f").read_text() == "only\n"


def test_unpack_needs_one_source_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    proc = generic_build(tmp_path, srcs=f"{a} {b}")
    assert proc.returncode != 0 and "set sourceRoot" in proc.stderr
    ok = generic_build(tmp_path, srcs=f"{a} {b}", sourceRoot="b", dontBuild="1", dontInstall="1")
    assert ok.returncode == 0, ok.stderr
