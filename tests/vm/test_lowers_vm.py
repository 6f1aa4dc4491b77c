"""Base layers as ext4 lowers in real build VMs: the same new layer as when the guest
unpacked tar lowers, more layers than the VM has disks, exportImage's merge in the VM."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.support.images import image_from_layers, layer_tar
from tests.support.rootbase import EXPECTED, rich_base, spec
from tests.support.rootsteps import build
from vmbuild.oci.digest import of_bytes
from vmbuild.vm.qemu import MAX_DISKS

pytestmark = [pytest.mark.vm]


def _last_layer(archive: Path) -> bytes:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        blob = tar.extractfile(manifest[0]["Layers"][-1])
        assert blob is not None
        return blob.read()


def test_rich_base_gives_the_same_new_layer_and_export(tmp_path: Path) -> None:
    base = rich_base(tmp_path)
    out = build(tmp_path, spec(base), "on-rich.tar")
    assert of_bytes(_last_layer(out)) == EXPECTED
    host = build(tmp_path, f'function = "exportImage"\nfromImage = "{base}"\n', "host.tar")
    vm = build(
        tmp_path, f'function = "exportImage"\nfromImage = "{base}"\nmergeInVM = true\n', "vm.tar"
    )
    assert vm.read_bytes() == host.read_bytes()


def test_more_layers_than_disks(tmp_path: Path) -> None:
    count = MAX_DISKS + 4
    layers = []
    for i in range(count):
        members: list[tuple[str, str, bytes | str]] = [("d", "d", ""), (f"d/f{i}", "f", str(i))]
        if i:
            members.append((f"d/.wh.f{i - 1}", "w", ""))
        if i == 2:
            members += [("keep", "d", ""), ("keep/x", "f", "x"), ("keep/hl", "h", "keep/x")]
        layers.append(layer_tar(tmp_path / f"l{i}.tar", members))
    image = image_from_layers(tmp_path / "many.tar", layers)
    text = (
        f'name = "many"\nfromImage = "{image}"\n'
        'runAsRoot = "ls /d /keep > /listing && cat /d/f* /keep/hl >> /listing"\n'
    )
    out = build(tmp_path, text, "many-out.tar")
    with tarfile.open(fileobj=io.BytesIO(_last_layer(out))) as layer:
        listing = layer.extractfile("listing")
        assert listing is not None
        assert listing.read().decode() == f"/d:\nf{count - 1}\n\n/keep:\nhl\nx\n{count - 1}x"
