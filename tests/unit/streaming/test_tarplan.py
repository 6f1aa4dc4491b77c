"""A planned layer packs to the very bytes oci.layer.pack packs, of the planned size."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from vmbuild.oci.layer import Owner, pack
from vmbuild.oci.tarplan import plan_tree
from vmbuild.oci.tree import Tree, from_roots
from vmbuild.streaming.lazy import FileLayer, TreeLayer


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def reference(tree: Tree, mtime: int, owner: Owner) -> bytes:
    out = io.BytesIO()
    packed = pack(tree, out, compression="none", mtime=mtime, owner=owner)
    assert packed.tar_size == len(out.getvalue())
    return out.getvalue()


def varied_root(root: Path) -> Path:
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "big").write_bytes(os.urandom((1 << 20) + 333))
    (root / "usr" / "lib" / "empty").write_bytes(b"")
    (root / "usr" / "lib" / "block").write_bytes(b"b" * 512)
    os.link(root / "usr" / "lib" / "block", root / "usr" / "lib" / "hardlink")
    (root / "usr" / "lib" / "libc.so").symlink_to("block")
    long_dir = root / ("d" * 90) / ("e" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / "long-name-file").write_text("long")
    (root / "é-ünïcode").write_text("u")
    (root / "link-to-a-long-target").symlink_to("t" * 150)
    os.mkfifo(root / "fifo")
    (root / "empty-dir").mkdir()
    (root / "setuid").write_text("s")
    (root / "setuid").chmod(0o4755)
    with contextlib.suppress(OSError):  # no user xattrs here: the rest still counts
        os.setxattr(root / "setuid", "user.vmbuild", b"value")
    return root


@pytest.mark.parametrize("owner", [Owner(0, 0), Owner(None, None), Owner(1000, 100)])
def test_plan_size_and_bytes_match_the_layer_writer(tmp_path: Path, owner: Owner) -> None:
    tree = from_roots([varied_root(tmp_path / "root")])
    tree.add_file("added/under/missing/parents", tmp_path / "root" / "setuid")
    expected = reference(tree, 12345, owner)
    with tarfile.open(fileobj=io.BytesIO(expected)) as tar:  # an independent reader
        got = {m.name: m for m in tar.getmembers()}
        assert got["usr/lib/hardlink"].islnk() and got["usr/lib/block"].isfile()
        assert got["usr/lib/libc.so"].linkname == "block"
        assert got["added/under/missing"].isdir() and got["fifo"].isfifo()
        assert got["setuid"].mode == 0o4755 and got["link-to-a-long-target"].linkname == "t" * 150
        assert {m.mtime for m in got.values()} == {12345}
        big = tar.extractfile("usr/lib/big")
        assert big is not None and big.read() == (tmp_path / "root/usr/lib/big").read_bytes()
    assert plan_tree(tree, 12345, owner).size == len(expected)
    out = io.BytesIO()
    TreeLayer(tree, 12345, owner).copy_to(out)
    assert out.getvalue() == expected


def test_empty_tree(tmp_path: Path) -> None:
    expected = reference(Tree(), 1, Owner())
    assert plan_tree(Tree(), 1, Owner()).size == len(expected) == 10240
    out = io.BytesIO()
    TreeLayer(Tree(), 1, Owner()).copy_to(out)
    assert out.getvalue() == expected


def test_a_tar_on_disk_is_copied_as_is(tmp_path: Path) -> None:
    path = tmp_path / "layer.tar"
    path.write_bytes(reference(from_roots([varied_root(tmp_path / "root")]), 1, Owner()))
    layer = FileLayer(path)
    out = io.BytesIO()
    layer.copy_to(out)
    assert layer.exact_size() == layer.size == len(out.getvalue())
    assert out.getvalue() == path.read_bytes()
