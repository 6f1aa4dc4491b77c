"""Deterministic layer tars: the bytes depend on content only."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmbuild.errors import ImageError
from vmbuild.oci import layer
from vmbuild.oci.compress import Compression, compressor, decompressor
from vmbuild.oci.tarplan import plan_tree
from vmbuild.oci.tree import BlobSource, Tree, from_roots


def make_tree(root: Path, *, mtime: int, reverse: bool = False) -> None:
    names = ["b/file", "a/file", "c", "a/z/deep"]
    for name in sorted(names, reverse=reverse):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(name)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF")
    os.chmod(root / "bin" / "tool", 0o755)
    os.link(root / "a/file", root / "hardlink")
    os.symlink("a/file", root / "symlink")
    os.setxattr(root / "c", "user.purpose", b"\x00\xffbinary")
    for p in [root, *root.rglob("*")]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)


def pack_bytes(root: Path, compression: Compression = "none") -> bytes:
    buf = io.BytesIO()
    layer.pack(from_roots([root]), buf, compression=compression, mtime=1)
    return buf.getvalue()


def test_same_content_same_bytes_whatever_mtime_umask_and_creation_order(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make_tree(tmp_path / "one", mtime=1000)
        os.umask(0o077)
        make_tree(tmp_path / "two", mtime=2_000_000, reverse=True)
    finally:
        os.umask(old)
    for p in (tmp_path / "two").rglob("*"):  # umask 077 changed modes: put them back
        if not p.is_symlink():
            os.chmod(p, os.stat(tmp_path / "one" / p.relative_to(tmp_path / "two")).st_mode)
    os.chmod(tmp_path / "two", 0o755)
    for kind in ("none", "gzip", "zstd"):
        assert pack_bytes(tmp_path / "one", kind) == pack_bytes(tmp_path / "two", kind)


def test_entries_metadata(tmp_path: Path) -> None:
    make_tree(tmp_path, mtime=12345)
    with tarfile.open(fileobj=io.BytesIO(pack_bytes(tmp_path))) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/"))
        by = {m.name: m for m in members}
        assert all(m.mtime == 1 and m.uid == 0 and m.gid == 0 for m in members)
        assert all(m.uname == "" and m.gname == "" for m in members)
        assert by["a/file"].isreg() and by["hardlink"].islnk()
        assert by["hardlink"].linkname == "a/file"
        assert by["symlink"].issym() and by["symlink"].linkname == "a/file"
        assert by["bin/tool"].mode == 0o755
        assert (
            by["c"].pax_headers["SCHILY.xattr.user.purpose"].encode("utf-8", "surrogateescape")
            == b"\x00\xffbinary"
        )


def test_owner_override_and_keep(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    buf = io.BytesIO()
    layer.pack(
        from_roots([tmp_path]), buf, compression="none", mtime=5, owner=layer.Owner(1000, 100)
    )
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        m = tar.getmember("f")
        assert (m.uid, m.gid, m.mtime) == (1000, 100, 5)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_diff_id_is_the_sha_of_the_decompressed_blob(tmp_path: Path, kind: Compression) -> None:
    import hashlib

    make_tree(tmp_path, mtime=1)
    buf = io.BytesIO()
    packed = layer.pack(from_roots([tmp_path]), buf, compression=kind, mtime=1)
    blob = buf.getvalue()
    assert packed.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    plain = decompressor(io.BytesIO(blob), kind).read()
    assert packed.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert packed.tar_size == len(plain)


def test_gzip_header_has_no_name_and_no_time() -> None:
    buf = io.BytesIO()
    with compressor(buf, "gzip") as z:
        z.write(b"hello" * 1000)
    head = buf.getvalue()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME, no FEXTRA, no comment
    assert head[4:8] == b"\0\0\0\0"  # mtime 0


def test_parents_are_added(tmp_path: Path) -> None:
    from vmbuild.oci.tree import Tree

    (tmp_path / "env").write_text("x")
    tree = Tree()
    tree.add_file("usr/bin/env", tmp_path / "env")
    buf = io.BytesIO()
    layer.pack(tree, buf, compression="none", mtime=1)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tar:
        assert tar.getnames() == ["usr", "usr/bin", "usr/bin/env"]
        assert tar.getmember("usr").mode == 0o755


@pytest.mark.parametrize("level", [1, 6])
def test_gzip_bytes_do_not_depend_on_threads(
    tmp_path: Path, level: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gzip

    import vmbuild.oci.compress as compress

    data = os.urandom(1 << 20) * 3 + b"text " * 500_000
    outs = []
    for n in (1, 2, 4):
        monkeypatch.setattr(compress, "threads", lambda n=n: n)
        buf = io.BytesIO()
        with compressor(buf, "gzip", level) as z:
            z.write(data)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1] == outs[2]
    assert gzip.decompress(outs[0]) == data


def test_gzip_bytes_do_not_depend_on_how_writes_are_cut() -> None:
    data = os.urandom(3 << 20) + b"abc" * 1_000_000
    outs = []
    for step in (1000, 1 << 20, 3 << 20, len(data)):
        buf = io.BytesIO()
        with compressor(buf, "gzip") as z:
            for i in range(0, len(data), step):
                z.write(data[i : i + step])
        outs.append(buf.getvalue())
    assert len(set(outs)) == 1


@pytest.mark.parametrize("size", [10, (1 << 20) + 7])  # one write, or several
@pytest.mark.parametrize("grow", [True, False])
def test_a_file_that_changes_size_while_packed_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, grow: bool
) -> None:
    target = tmp_path / "root" / "f"
    target.parent.mkdir()
    target.write_bytes(b"x" * size)
    real = layer.members

    def changing(*args: object, **kwargs: object) -> Iterator[layer.Member]:
        for member in real(*args, **kwargs):  # type: ignore[arg-type]
            if member.host == str(target):
                target.write_bytes(b"x" * (size + 1 if grow else size - 1))
            yield member

    monkeypatch.setattr(layer, "members", changing)
    with pytest.raises(ImageError, match="changed while the image was being written") as info:
        layer.pack(from_roots([tmp_path / "root"]), io.BytesIO(), compression="none", mtime=1)
    assert str(target) in info.value.message


@pytest.mark.parametrize(
    ("name", "entry", "says"),
    [
        ("var/lib/dpkg/info/../../x.list", stat.S_IFREG | 0o644, "climbs out with '..'"),
        ("usr/share/a\n/etc/shadow", stat.S_IFREG | 0o644, "holds a control character"),
        ("usr/x", stat.S_IFLNK | 0o777, "points outside the image"),
    ],
)
def test_every_entry_passes_the_layer_name_rule_before_it_is_written(
    tmp_path: Path, name: str, entry: int, says: str
) -> None:
    """The last gate: whatever made a tree's entries (a package, a remote cache's record
    of them, host files), its layer holds no name a layer reader refuses."""
    payload = tmp_path / "payload"
    payload.write_bytes(b"x")
    tree = Tree({name: BlobSource(payload, entry, size=1, offset=0, linkname="../../etc")})
    with pytest.raises(ImageError, match=f"{says}.*from {payload}"):
        layer.pack(tree, io.BytesIO(), compression="none", mtime=1)
    with pytest.raises(ImageError, match=says):
        plan_tree(tree, 1, layer.ROOT)


def test_a_host_file_with_a_newline_in_its_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a\nb").write_text("x")
    with pytest.raises(ImageError, match="'a\\\\nb' holds a control character"):
        pack_bytes(tmp_path / "root")
