"""Two runners share a runAsRoot step through a remote cache (the real registry on
127.0.0.1): runner B, with an empty local cache, boots no VM and writes the same bytes;
a changed script misses; four builds at once against one local and one remote cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli
from tests.support.images import image_from_layers, layer_tar
from tests.support.registry_fixture import free_port, registry
from vmbuild.cache import cache_dir

pytestmark = [pytest.mark.vm, pytest.mark.tools]

SCRIPT = "mkdir -p /srv && echo shared > /srv/x && chown 3:4 /srv/x"


# What a CI runner's image would carry: the guest kernel and userland (made once, not
# what a remote cache is for). Every other kind (blobs, steps, ...) is the runner's own.
VM_KINDS = (
    "kernel",
    "initramfs",
    "initramfs-index",
    "cloud-kernel",
    "cloud-initrd",
    "accel-probe",
    "ssh-keys",
)


def _runner(tmp_path: Path, name: str) -> dict[str, str]:
    """Runner ``name``'s own cache directory (the guest's kinds linked from the user's)."""
    cache = tmp_path / name / "cache"
    if not cache.exists():
        cache.mkdir(parents=True)
        shared = cache_dir()
        for kind in VM_KINDS:
            if (shared / kind).is_dir():
                (cache / kind).symlink_to(shared / kind)
    return {"VMBUILD_CACHE_DIR": str(cache), "VMBUILD_STEP_CACHE": str(tmp_path / name / "steps")}


def _no_qemu(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose QEMU only leaves a mark and fails: did a build boot a VM?"""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    mark = tmp_path / "qemu-ran"
    fake = bin_dir / "qemu-system-x86_64"
    fake.write_text(f"#!/bin/sh\necho ran >> {mark}\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, mark


def _specs(tmp_path: Path, base: Path, url: str) -> tuple[Path, Path, Path]:
    root = tmp_path / "spec"
    root.mkdir()
    (root / "content").mkdir()
    (root / "content" / "c").write_text("content\n")
    step = root / "step.toml"
    step.write_text(
        f'name = "shared"\ntag = "1"\nfromImage = "{base}"\ncopyToRoot = "content"\n'
        f'runAsRoot = """{SCRIPT}"""\ncacheTo = "{url}"\ncacheFrom = ["{url}"]\n'
    )
    changed = root / "changed.toml"
    changed.write_text(step.read_text().replace("echo shared", "echo other"))
    layered = root / "layered.toml"
    contents = root / "content"
    layered.write_text(
        f'function = "buildLayeredImage"\nname = "lay"\ntag = "1"\ncontents = ["{contents}"]\n'
    )
    return step, changed, layered


def test_runner_b_builds_from_the_remote_cache_without_a_vm(tmp_path: Path) -> None:
    base = image_from_layers(
        tmp_path / "base.tar", [layer_tar(tmp_path / "l0.tar", [("etc", "d", "")])]
    )
    with registry(tmp_path / "registry") as reg:
        url = f"docker://{reg.host}/team/cache"
        step, changed, layered = _specs(tmp_path, base, url)
        a_out = tmp_path / "a.tar"
        a = vmbuild_cli("build", step, "--out", a_out, env=_runner(tmp_path, "a"))
        assert a.returncode == 0, a.stderr
        assert "pushed to the remote cache" in a.stderr

        fake, mark = _no_qemu(tmp_path)
        b_out = tmp_path / "b.tar"
        b = vmbuild_cli("build", step, "--out", b_out, env={**_runner(tmp_path, "b"), **fake})
        assert b.returncode == 0, b.stderr
        assert not mark.exists()  # runner B booted no VM
        assert "warning: remote cache" not in b.stderr
        assert b_out.read_bytes() == a_out.read_bytes()

        # a changed script misses: it wants a VM (which this PATH cannot give)
        c = vmbuild_cli(
            "build", changed, "--out", tmp_path / "c.tar", env={**_runner(tmp_path, "c"), **fake}
        )
        assert c.returncode != 0 and mark.exists()
        mark.unlink()

        # four builds at once (two runAsRoot) on one fresh local cache, one remote cache
        env = {**os.environ, **_runner(tmp_path, "d"), **fake}
        jobs = [(step, "d1.tar"), (step, "d2.tar"), (layered, "d3.tar"), (layered, "d4.tar")]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vmbuild",
                    "build",
                    str(spec),
                    "--out",
                    str(tmp_path / out),
                    "--cache-from",
                    url,
                    "--cache-to",
                    url,
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for spec, out in jobs
        ]
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err
            assert "warning: remote cache" not in err
        assert not mark.exists()
        assert (tmp_path / "d1.tar").read_bytes() == a_out.read_bytes()
        assert (tmp_path / "d2.tar").read_bytes() == a_out.read_bytes()
        assert (tmp_path / "d3.tar").read_bytes() == (tmp_path / "d4.tar").read_bytes()
        tags = json.loads(
            subprocess.run(
                ["skopeo", "list-tags", "--tls-verify=false", url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["Tags"]
        assert len([t for t in tags if t.startswith("step-")]) == 1

        # a cache that cannot be reached: one warning, the build goes on, exit 0
        down = f"docker://127.0.0.1:{free_port()}/team/cache"
        e_out = tmp_path / "e.tar"
        e = vmbuild_cli(
            "build",
            step,
            "--out",
            e_out,
            "--cache-to",
            down,
            env={**_runner(tmp_path, "a"), **fake},
        )
        assert e.returncode == 0, e.stderr
        assert e.stderr.count("vmbuild: warning: remote cache") == 1, e.stderr
        assert e_out.read_bytes() == a_out.read_bytes()
