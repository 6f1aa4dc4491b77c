"""runAsRoot and ``mergeInVM = true`` on bases with gzip and zstd layers, in real build
VMs: the guest sees the base's tree, and the VM's merge gives the host merge's bytes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.containers import skopeo
from tests.support.crafted import build_base, layer_kinds

pytestmark = [pytest.mark.vm, pytest.mark.tools]

RUN_AS_ROOT = '''
runAsRoot = """
cat /etc/one /etc/two > /both
rm /etc/two
test "$(readlink /bin/one)" = ../etc/one
"""
'''


def build(tmp_path: Path, name: str, text: str) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text)
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    return out


def top_layer(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        blob = tar.extractfile(manifest[0]["Layers"][-1])
        assert blob is not None
        with tarfile.open(fileobj=blob) as layer:
            out = {}
            for m in layer:
                f = layer.extractfile(m) if m.isreg() else None
                out[m.name.rstrip("/")] = f.read().decode() if f else ""
            return out


@pytest.mark.parametrize(
    ("fmt", "compression"), [("oci-archive", "gzip"), ("oci", "zstd")], ids=["gzip", "zstd"]
)
def test_run_as_root_on_compressed_layers(tmp_path: Path, fmt: str, compression: str) -> None:
    base = build_base(tmp_path / "b", fmt, compression)
    assert layer_kinds(base) == {compression}
    out = build(tmp_path, "out.tar", f'name = "r"\ntag = "t"\nfromImage = "{base}"\n' + RUN_AS_ROOT)
    new = top_layer(out)
    assert new["both"] == "one\ntwo\n"
    assert "etc/.wh.two" in new and "etc/one" not in new
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path / 'check'}:t")  # digests verify


@pytest.mark.parametrize(
    ("fmt", "compression"), [("skopeo-oci", "gzip"), ("oci-archive", "zstd")], ids=["gzip", "zstd"]
)
def test_merge_in_vm_on_compressed_layers(tmp_path: Path, fmt: str, compression: str) -> None:
    base = build_base(tmp_path / "b", fmt, compression)
    assert layer_kinds(base) == {compression}
    export = f'function = "exportImage"\nfromImage = "{base}"\n'
    host = build(tmp_path, "host.tar", export)
    vm = build(tmp_path, "vm.tar", export + "mergeInVM = true\n")
    assert vm.read_bytes() == host.read_bytes()
    with tarfile.open(vm) as tar:
        assert sorted(m.name.rstrip("/") for m in tar) == [
            "bin",
            "bin/one",
            "etc",
            "etc/one",
            "etc/two",
        ]
