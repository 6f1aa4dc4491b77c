"""Deterministic layer tars.

A layer written here depends only on the content it packs: names sorted component by
component, every mtime set to one value, numeric owners (given, or taken from the
source), no atime/ctime, no user or group names, hard links kept as links within the
layer, symlinks and device nodes kept, extended attributes kept as PAX
``SCHILY.xattr.*`` records (``security.selinux`` is dropped: it is a host label).
Missing parent directories are added (0755). The diff_id is the sha256 of the tar.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from vmbuild.errors import ImageError
from vmbuild.oci.compress import Compression, compressor
from vmbuild.oci.digest import Coalescer, HashingWriter
from vmbuild.oci.fasttar import member_header
from vmbuild.oci.tree import Source, Tree

COPY_BUFSIZE = 1 << 20
SKIPPED_XATTRS = ("security.selinux",)
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(RECORD + 2 * BLOCK)
HINT = "run the build again when the input files are no longer changing"


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


@dataclass(frozen=True)
class Member:
    """A header, then ``size`` bytes of the regular file ``host`` (none if empty)."""

    header: bytes
    host: str = ""
    size: int = 0


def changed(host: str | os.PathLike[str], planned: int, now: int) -> ImageError:
    return ImageError(
        f"{host} changed while the image was being written "
        f"(size {planned} when the layer was planned, {now} when read)",
        HINT,
    )


def cannot_read(host: str | os.PathLike[str], exc: OSError) -> ImageError:
    return ImageError(f"cannot read {host}: {exc.strerror}", "check the input")


@contextlib.contextmanager
def open_range(host: str | os.PathLike[str], size: int, offset: int = 0) -> Iterator[io.FileIO]:
    """``host`` opened unbuffered at ``offset``, once its size is known to fit: the
    whole file is ``size`` bytes, or (``offset`` > 0, a blob inside an archive) it holds
    ``size`` bytes from ``offset``."""
    try:
        f = io.FileIO(host, "rb")
    except OSError as exc:
        raise cannot_read(host, exc) from exc
    with f:
        now = os.fstat(f.fileno()).st_size
        if (now < offset + size) if offset else (now != size):
            raise changed(host, offset + size, now)
        if offset:
            f.seek(offset)
        yield f


def _info(name: str, mtime: int, uid: int, gid: int, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
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


# Called with each entry of the tree and its stat, as :func:`members` reaches it.
OnEntry = Callable[[str, Source, os.stat_result], None]


def members(
    tree: Tree, mtime: int, owner: Owner, on_entry: OnEntry | None = None
) -> Iterator[Member]:
    """The members of ``tree``'s layer tar, in order: the one mapping from host files to
    tar members, for packing (:func:`write_tree`) and planning
    (:func:`vmbuild.oci.tarplan.plan_tree`) alike."""
    links: dict[tuple[int, int], str] = {}
    names = tree.sorted_names()
    provided = set(names)
    for name, synthetic in with_parents(names):
        if synthetic:
            if name not in provided:
                ti = _info(name + "/", mtime, owner.uid or 0, owner.gid or 0, 0o755)
                ti.type = tarfile.DIRTYPE
                yield Member(member_header(ti))
            continue
        src = tree.entries[name]
        try:
            st = src.stat()
        except OSError as exc:
            raise cannot_read(src.host, exc) from exc
        if on_entry is not None:
            on_entry(name, src, st)
        member = _member(name, src, st, mtime, owner, links)
        if member is not None:
            yield member


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
    ti = _info(name, mtime, uid, gid, stat.S_IMODE(st.st_mode))
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
    end = size + 2 * BLOCK
    return end + (-end % RECORD) - size


def write_tree(tree: Tree, sink: BinaryIO, *, mtime: int, owner: Owner = Owner()) -> int:
    """Write ``tree``'s layer tar to ``sink`` deterministically; returns its size.

    A member that fits one buffer goes out in one write (header, data and padding).
    The sink gets views of that reused buffer: it must copy what it keeps.
    """
    buf = memoryview(bytearray(COPY_BUFSIZE))
    done = 0
    for member in members(tree, mtime, owner):
        head = len(member.header)
        end = head + member.size
        whole = end + (-member.size % BLOCK)
        if whole <= len(buf):
            buf[:head] = member.header
            if member.size:
                with open_range(member.host, member.size) as f:
                    _fill(f, buf[head:end], member, 0)
            buf[end:whole] = _ZEROS[: whole - end]
            sink.write(buf[:whole])
        else:
            sink.write(member.header)
            with open_range(member.host, member.size) as f:
                for start in range(0, member.size, len(buf)):
                    view = buf[: min(len(buf), member.size - start)]
                    _fill(f, view, member, start)
                    sink.write(view)
            sink.write(_ZEROS[: whole - end])
        done += whole
    end = end_size(done)
    sink.write(_ZEROS[:end])
    return done + end


def _fill(f: io.FileIO, view: memoryview, member: Member, start: int) -> None:
    """Read ``view`` full from ``f``, at ``start`` bytes into ``member``'s data."""
    got = 0
    while got < len(view):
        try:
            n = f.readinto(view[got:])
        except OSError as exc:
            raise cannot_read(member.host, exc) from exc
        if not n:
            raise changed(member.host, member.size, start + got)
        got += n


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
        write_tree(tree, cast(BinaryIO, batched), mtime=mtime, owner=owner)
        batched.flush()
    return Packed(tar_hash.digest, tar_hash.size, blob.digest, blob.size)
