"""The step cache through the CLI: an unchanged runAsRoot boots no VM, any change does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli
from tests.support.images import image_from_layers, layer_tar

pytestmark = [pytest.mark.vm]

SCRIPT = "mkdir /data && echo hi > /data/x && chown 5:6 /data"


def _spec(tmp_path: Path, name: str, base: Path, script: str = SCRIPT, uid: int = 0) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(
        f'name = "cached"\ntag = "t"\nfromImage = "{base}"\ncopyToRoot = "content"\n'
        f"uid = {uid}\ngid = {uid}\n"
        f'runAsRoot = """{script}"""\n'
    )
    return spec


def _no_qemu(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose QEMU only leaves a mark (and fails): did a build boot a VM?"""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    mark = tmp_path / "qemu-ran"
    fake = bin_dir / "qemu-system-x86_64"
    fake.write_text(f"#!/bin/sh\necho ran >> {mark}\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, mark


def test_unchanged_step_boots_no_vm_and_every_input_counts(tmp_path: Path) -> None:
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "c").write_text("content\n")
    base = image_from_layers(
        tmp_path / "base.tar", [layer_tar(tmp_path / "l0.tar", [("etc", "d", "")])]
    )
    spec = _spec(tmp_path, "s", base)
    outs = [tmp_path / "a.tar", tmp_path / "b.tar"]
    # two identical cold builds at once: both succeed, same bytes
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "vmbuild", "build", str(spec), "--out", str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        stages = [ln.split(" (")[0] for ln in err.splitlines() if ln.startswith("vmbuild> ")]
        assert stages[:3] == [
            "vmbuild> preparing base layers: 1 of 1, " + stages[0].split(", ", 1)[1],
            "vmbuild> booting the build VM",
            "vmbuild> running runAsRoot ...",
        ], err
        assert any(s.startswith("vmbuild> built cached:t in ") for s in stages), err
    assert outs[0].read_bytes() == outs[1].read_bytes()

    env, mark = _no_qemu(tmp_path)
    hit = vmbuild_cli("build", spec, "--out", tmp_path / "hit.tar", env=env)
    assert hit.returncode == 0, hit.stderr
    assert not mark.exists()  # no VM was started
    assert "vmbuild> runAsRoot: unchanged, its layer comes from the step cache" in hit.stderr
    quiet = vmbuild_cli("build", spec, "--out", tmp_path / "hit.tar", "-q", env=env)
    assert quiet.returncode == 0 and "vmbuild>" not in quiet.stderr, quiet.stderr
    assert (tmp_path / "hit.tar").read_bytes() == outs[0].read_bytes()

    other_base = image_from_layers(
        tmp_path / "base2.tar", [layer_tar(tmp_path / "l1.tar", [("etc", "d", ""), ("x", "f", "")])]
    )
    changes = {
        "script": _spec(tmp_path, "script", base, script=SCRIPT + " && true"),
        "base layer": _spec(tmp_path, "base", other_base),
        "uid": _spec(tmp_path, "uid", base, uid=7),
    }
    for what, changed in changes.items():
        mark.unlink(missing_ok=True)
        proc = vmbuild_cli("build", changed, "--out", tmp_path / "x.tar", env=env)
        assert proc.returncode != 0 and mark.exists(), what  # it wanted a VM
    (tmp_path / "content" / "c").write_text("changed\n")
    mark.unlink(missing_ok=True)
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "x.tar", env=env)
    assert proc.returncode != 0 and mark.exists(), "copyToRoot content"
    (tmp_path / "content" / "c").write_text("content\n")
    mark.unlink(missing_ok=True)
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "x.tar", "--no-cache", env=env)
    assert proc.returncode != 0 and mark.exists(), "--no-cache"
