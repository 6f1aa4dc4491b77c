"""Deterministic layer tars.

A layer written here depends only on the content it packs: names sorted component by
component, every mtime set to one value, numeric owners (given, or taken from the
source), no atime/ctime, no user or group names, hard links kept as links within the
layer, symlinks and device nodes kept, extended attributes kept as PAX
``SCHILY.xattr.*`` records (``security.selinux`` is dropped: it is a host label).
Missing parent directories are added (0755). The diff_id is the sha256 of the tar.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from vmbuild.errors import ImageError
from vmbuild.oci.compress import Compression, compressor
from vmbuild.oci.digest import Coalescer, HashingWriter
from vmbuild.oci.fasttar import add
from vmbuild.oci.tree import Source, Tree

COPY_BUFSIZE = 1 << 20
SKIPPED_XATTRS = ("security.selinux",)


@dataclass(frozen=True)
class Owner:
    """Owners for every entry; None keeps the source's numeric owner."""

    uid: int | None = 0
    gid: int | None = 0


@dataclass(frozen=True)
class Packed:
    """What packing produced: diff_id/size of the tar, digest/size of the blob written."""

    diff_id: str
    tar_size: int
    digest: str
    size: int


def open_tar(sink: BinaryIO) -> tarfile.TarFile:
    return tarfile.TarFile(
        fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFSIZE
    )


def read_xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for name in sorted(names):
        if name in SKIPPED_XATTRS:
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return out


def _info(name: str, st: os.stat_result, mtime: int, owner: Owner) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = mtime
    ti.uid = st.st_uid if owner.uid is None else owner.uid
    ti.gid = st.st_gid if owner.gid is None else owner.gid
    ti.uname = ""
    ti.gname = ""
    return ti


def _dir_info(name: str, mtime: int, owner: Owner) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name + "/")
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = mtime
    ti.uid = owner.uid or 0
    ti.gid = owner.gid or 0
    ti.uname = ti.gname = ""
    return ti


def with_parents(names: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Yield (name, synthetic) in order, inserting parents no entry provides."""
    seen: set[str] = set()
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                yield parent, True
        seen.add(name)
        yield name, False


def write_tree(tree: Tree, tar: tarfile.TarFile, *, mtime: int, owner: Owner = Owner()) -> None:
    """Append every entry of ``tree`` to ``tar`` deterministically."""
    links: dict[tuple[int, int], str] = {}
    names = tree.sorted_names()
    provided = set(names)
    for name, synthetic in with_parents(names):
        if synthetic:
            if name not in provided:
                add(tar, _dir_info(name, mtime, owner))
            continue
        _add_entry(tar, name, tree.entries[name], mtime, owner, links)


def _add_entry(
    tar: tarfile.TarFile,
    name: str,
    src: Source,
    mtime: int,
    owner: Owner,
    links: dict[tuple[int, int], str],
) -> None:
    try:
        st = src.stat()
    except OSError as exc:
        raise ImageError(f"cannot read {src.host}: {exc.strerror}", "check the input") from exc
    ti = _info(name, st, mtime, owner)
    host = os.fspath(src.host)
    ti.pax_headers = read_xattrs(host)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = links[key]
            add(tar, ti)
            return
        if st.st_nlink > 1:
            links[key] = name
        ti.size = st.st_size
        try:
            with open(host, "rb") as f:
                add(tar, ti, f)
        except OSError as exc:
            raise ImageError(f"cannot read {host}: {exc.strerror}", "check the input") from exc
    elif stat.S_ISDIR(mode):
        ti.name = name + "/"
        ti.type = tarfile.DIRTYPE
        add(tar, ti)
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(host)
        ti.mode = 0o777
        add(tar, ti)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor = os.major(st.st_rdev)
        ti.devminor = os.minor(st.st_rdev)
        add(tar, ti)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
        add(tar, ti)
    # sockets and doors cannot live in a tar: skipped, as GNU tar does


def pack(
    tree: Tree,
    sink: BinaryIO,
    *,
    compression: Compression,
    level: int | None = None,
    mtime: int,
    owner: Owner = Owner(),
) -> Packed:
    """Write ``tree`` as a (compressed) layer blob to ``sink`` in one pass."""
    blob = HashingWriter(sink)
    with compressor(cast(BinaryIO, blob), compression, level) as zsink:
        tar_hash = HashingWriter(zsink)
        batched = Coalescer(cast(BinaryIO, tar_hash))
        with open_tar(cast(BinaryIO, batched)) as tar:
            write_tree(tree, tar, mtime=mtime, owner=owner)
        batched.flush()
    return Packed(tar_hash.digest, tar_hash.size, blob.digest, blob.size)
