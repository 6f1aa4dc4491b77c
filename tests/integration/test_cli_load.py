"""`vmbuild load` into Debian 12's podman (which reads only uncompressed archives),
through the real CLI, with podman's storage in a throwaway directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli, write_spec

pytestmark = pytest.mark.tools


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("--compress", "gzip"), "a.tar.gz"),
        (("--compress", "zstd"), "a.tar.zst"),
        (("--format", "oci-archive"), "a.oci.tar"),
    ],
)
def test_load_into_podman(tmp_path: Path, args: tuple[str, ...], name: str) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("hi\n")
    spec = write_spec(tmp_path, 'name = "loaded"\ntag = "7"\ncopyToRoot = ["root"]\n')
    out = tmp_path / name
    assert vmbuild_cli("build", spec, *args, "-o", out).returncode == 0
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/store"\nrunroot = "{tmp_path}/run"\n'
    )
    engine = tmp_path / "containers.conf"
    engine.write_text(
        f'[engine]\ntmp_dir = "{tmp_path}/libpod"\nstatic_dir = "{tmp_path}/static"\n'
        'cgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    env = {"CONTAINERS_STORAGE_CONF": str(conf), "CONTAINERS_CONF": str(engine)}
    proc = vmbuild_cli("load", out, "--to", "podman", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Loaded image" in proc.stdout + proc.stderr
    images = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "localhost/loaded:7" in images.stdout.split()


def test_load_refuses_a_layout_directory(tmp_path: Path) -> None:
    (tmp_path / "layout").mkdir()
    proc = vmbuild_cli("load", tmp_path / "layout")
    assert proc.returncode == 2 and "skopeo copy oci:" in proc.stderr
