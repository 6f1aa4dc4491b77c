"""The build VM's overlay sees the host merge's tree on the crafted symlink and whiteout cases.

All of ``tests/support/export_cases.py``'s cases go in one image (each in a directory
of its own, above a root-level opaque marker), so two boots cover them: one export with
``mergeInVM``, one runAsRoot listing its view of the base.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.export_cases import (
    Tree,
    assert_no_member_below_a_non_directory,
    combined,
    oci_layout,
    rootfs_tree,
    tar_tree,
    umoci_unpack,
)

pytestmark = [pytest.mark.vm, pytest.mark.tools]

LISTING = """
cd /
find . -xdev -exec stat -c 'LS|%n|%f|%u|%g|%N' {} +
find . -xdev -type f -exec sha256sum {} + | sed 's/^/SUM|/'
"""
MOUNTS = {"dev", "proc", "sys", ".vmbuild"}  # made and mounted by the step, not the base's


def build(tmp_path: Path, text: str, name: str) -> tuple[Path, str]:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text)
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def test_export_in_vm_gives_the_host_merge_bytes(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path / "image", combined())
    export = f'function = "exportImage"\nfromImage = "{layout}"\n'
    host, _ = build(tmp_path, export, "host.tar")
    vm, _ = build(tmp_path, export + "mergeInVM = true\n", "vm.tar")
    assert vm.read_bytes() == host.read_bytes()
    assert_no_member_below_a_non_directory(vm)
    proc = umoci_unpack(layout, tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    assert tar_tree(vm) == rootfs_tree(tmp_path / "bundle" / "rootfs")


def listed(output: str) -> Tree:
    """The tree runAsRoot's ``find`` and ``stat`` printed."""
    sums = {}
    for line in output.splitlines():
        if line.startswith("SUM|"):
            digest, name = line[4:].split(None, 1)
            sums[name] = digest
    out: Tree = {}
    for line in output.splitlines():
        if not line.startswith("LS|"):
            continue
        name, raw, uid, gid, quoted = line[3:].split("|", 4)
        rel = name.removeprefix("./")
        if name == "." or rel.split("/")[0] in MOUNTS:
            continue
        mode = int(raw, 16)
        if stat.S_ISDIR(mode):
            out[rel] = ("d", stat.S_IMODE(mode), int(uid), int(gid), "")
        elif stat.S_ISLNK(mode):
            target = quoted.split(" -> ", 1)[1].strip("'")
            out[rel] = ("l", 0, int(uid), int(gid), target)
        else:
            out[rel] = ("f", stat.S_IMODE(mode), int(uid), int(gid), sums[name])
    return out


def test_run_as_root_sees_the_export_tree(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path / "image", combined())
    host, _ = build(tmp_path, f'function = "exportImage"\nfromImage = "{layout}"\n', "host.tar")
    _, stderr = build(
        tmp_path,
        f'name = "view"\nfromImage = "{layout}"\nrunAsRoot = """{LISTING}"""\n',
        "view.tar",
    )
    seen = listed(stderr)
    want = tar_tree(host)
    assert sorted(seen) == sorted(want)
    for name in want:
        assert seen[name] == want[name], name
