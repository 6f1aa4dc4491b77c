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
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NamedTuple, cast

from vmbuild.errors import ImageError
from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.compress import COMPRESS_CHUNK, Compression, compressor
from vmbuild.oci.fasttar import member_header
from vmbuild.oci.inputs import cannot_read
from vmbuild.oci.safety import check_member
from vmbuild.oci.sinks import HashingWriter, TarSink
from vmbuild.oci.tarstream import TAR_BLOCK
from vmbuild.oci.tree import BlobSource, Entry, Source, Tree

COPY_BUFSIZE = 1 << 20
SKIPPED_XATTRS = ("security.selinux",)
RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(RECORD + 2 * TAR_BLOCK)


class Owner(NamedTuple):
    """Owners for every entry; None keeps the source's numeric owner. ``uname`` and
    ``gname`` go into every header (empty: none, as for a layer of numeric owners)."""

    uid: int | None = 0
    gid: int | None = 0
    uname: str = ""
    gname: str = ""


ROOT = Owner()  # every entry root's (0:0), with no user or group names


class Packed(NamedTuple):
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


class Member(NamedTuple):
    """A header, then ``size`` bytes of the regular file ``host`` (none if empty)."""

    header: bytes
    host: str = ""
    size: int = 0
    offset: int = 0


def _info(name: str, mtime: int, uid: int, gid: int, mode: int, owner: Owner) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
    ti.uname, ti.gname = owner.uname, owner.gname
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


# Called with each entry of the tree and its stat, as :func:`members` reaches it.
OnEntry = Callable[[str, Entry, os.stat_result], None]


def members(
    tree: Tree, mtime: int, owner: Owner, on_entry: OnEntry | None = None
) -> Iterator[Member]:
    """The members of ``tree``'s layer tar, in order: the one mapping from host files to
    tar members, for packing (:func:`write_members`, :func:`pack`) and planning
    (:func:`vmbuild.oci.tarplan.plan_tree`) alike."""
    links: dict[tuple[int, int], str] = {}
    groups: dict[str, str] = {}  # a BlobSource's link_group -> the name holding its data
    names = tree.sorted_names()
    provided = set(names)
    for name, synthetic in with_parents(names):
        if synthetic:
            if name not in provided:
                ti = _info(name + "/", mtime, owner.uid or 0, owner.gid or 0, 0o755, owner)
                ti.type = tarfile.DIRTYPE
                yield Member(member_header(ti))
            continue
        src = tree.entries[name]
        _gate(name, src)
        try:
            st = src.stat()
        except OSError as exc:
            raise cannot_read(src.host, exc) from exc
        if on_entry is not None:
            on_entry(name, src, st)
        if isinstance(src, BlobSource):
            yield _blob_member(name, src, mtime, owner, groups)
            continue
        member = _member(name, src, st, mtime, owner, links)
        if member is not None:
            yield member


def _gate(name: str, src: Entry) -> None:
    """The last check of every entry a layer is written with, whatever its source (host
    files, packages, a remote cache's record of them): the name rule of every layer
    vmbuild reads (:func:`vmbuild.oci.safety.check_member`); a given symlink's target
    too (a host symlink's is the user's own)."""
    link = src.linkname if isinstance(src, BlobSource) and stat.S_ISLNK(src.mode) else None
    try:
        check_member(name, "a layer being written", symlink_to=link)
    except ImageError as exc:
        raise ImageError(
            f"{exc.message} (from {src.host})", "vmbuild writes no such entry into a layer"
        ) from None


def _blob_member(
    name: str, src: BlobSource, mtime: int, owner: Owner, groups: dict[str, str]
) -> Member:
    """A member whose metadata the source gives (a package's owners are kept)."""
    ti = _info(name, mtime, src.uid, src.gid, stat.S_IMODE(src.mode), owner)
    mode = src.mode
    if stat.S_ISREG(mode):
        if src.link_group and src.link_group in groups:
            ti.type = tarfile.LNKTYPE
            ti.linkname = groups[src.link_group]
            return Member(member_header(ti))
        if src.link_group:
            groups[src.link_group] = name
        ti.size = src.size
        return Member(member_header(ti), str(src.host), src.size, src.offset)
    if stat.S_ISDIR(mode):
        ti.name = name + "/"
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = src.linkname
        ti.mode = 0o777
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor = os.major(src.rdev)
        ti.devminor = os.minor(src.rdev)
    else:
        ti.type = tarfile.FIFOTYPE
    return Member(member_header(ti))


def _member(
    name: str,
    src: Source,
    st: os.stat_result,
    mtime: int,
    owner: Owner,
    links: dict[tuple[int, int], str],
) -> Member | None:
    uid = st.st_uid if owner.uid is None else owner.uid
    gid = st.st_gid if owner.gid is None else owner.gid
    ti = _info(name, mtime, uid, gid, stat.S_IMODE(st.st_mode), owner)
    host = os.fspath(src.host)
    ti.pax_headers = read_xattrs(host)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = links[key]
            return Member(member_header(ti))
        if st.st_nlink > 1:
            links[key] = name
        ti.size = st.st_size
        return Member(member_header(ti), host, st.st_size)
    if stat.S_ISDIR(mode):
        ti.name = name + "/"
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(host)
        ti.mode = 0o777
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor = os.major(st.st_rdev)
        ti.devminor = os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None  # sockets and doors cannot live in a tar: skipped, as GNU tar does
    return Member(member_header(ti))


def end_size(size: int) -> int:
    """What follows ``size`` bytes of members: two zero blocks, then padding to
    tarfile's 10240-byte record."""
    end = size + 2 * TAR_BLOCK
    return end + (-end % RECORD) - size


def write_zeros(out: TarSink, n: int) -> None:
    """``n`` zero bytes, through ``out.write`` (at most a record and two blocks a write)."""
    while n > 0:
        k = min(n, len(_ZEROS))
        out.write(_ZEROS[:k])
        n -= k


def write_members(items: Iterable[Member], out: TarSink, end: bool = True) -> int:
    """Write a tar of ``items`` to ``out`` (with ``end``, its end blocks and record
    padding too); returns the bytes written."""
    done = 0
    for member in items:
        out.write(member.header)
        done += len(member.header)
        if member.size:
            out.copy_file(member.host, member.size, member.offset)
            pad = -member.size % TAR_BLOCK
            out.zeros(pad)
            done += member.size + pad
    if end:
        tail = end_size(done)
        out.zeros(tail)
        done += tail
    return done


def pack(
    tree: Tree,
    sink: BinaryIO,
    *,
    compression: Compression,
    level: int | None = None,
    mtime: int,
    owner: Owner = ROOT,
) -> Packed:
    """Write ``tree`` as a (compressed) layer blob to ``sink`` in one pass: file data is
    read straight into blocks that one thread hashes (the diff_id) and another hands to
    the compressor."""
    blob = HashingWriter(sink)
    with compressor(cast(BinaryIO, blob), compression, level) as zsink:
        with BlockWriter(zsink, COMPRESS_CHUNK) as out:
            digest = out.begin_hash()
            size = write_members(members(tree, mtime, owner), out)
            out.end_hash()
        diff_id = out.result(digest)
    return Packed(diff_id, size, blob.digest, blob.size)
