"""A fast path for appending plain members to a :class:`tarfile.TarFile`.

``tarfile.addfile`` costs tens of microseconds a member (header objects, a copy of the
TarInfo, PAX checks), which dominates packing trees of many small files. For a member
that needs no PAX record (ASCII names and link names of at most 100 bytes, no xattrs,
numbers that fit their octal fields) :func:`add` builds the very same ustar header
``tarfile`` would write in PAX format, byte for byte, and streams the data itself
through one reused buffer per thread (header, data and padding in one write for a small
file; no allocation per member); anything else goes through ``tarfile``. Written
members are not kept in memory.
"""

from __future__ import annotations

import tarfile
import threading
from typing import BinaryIO, Protocol, cast

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20  # data bytes per write (one buffer, reused)
_NUL = b"\0"
_ZEROS = bytes(BLOCK)
_MAGIC = b"ustar\x0000"
# uname, gname, devmajor, devminor (empty unless a device), prefix, padding
_EMPTY_OWNER_AND_DEV = b"\0" * (32 + 32 + 8 + 8 + 155 + 12)


def _field(text: str, length: int) -> bytes | None:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(raw) > length:
        return None
    return raw + _NUL * (length - len(raw))


def _octal(n: int, digits: int) -> bytes | None:
    if not 0 <= n < 8 ** (digits - 1):
        return None
    return b"%0*o\0" % (digits - 1, n)


def header(ti: tarfile.TarInfo) -> bytes | None:
    """The 512-byte ustar header tarfile would write for ``ti``, or None if it needs PAX."""
    if ti.pax_headers or ti.uname or ti.gname or not isinstance(ti.mtime, int):
        return None
    name = ti.name + "/" if ti.type == tarfile.DIRTYPE and not ti.name.endswith("/") else ti.name
    parts = (
        _field(name, 100),
        _octal(ti.mode & 0o7777, 8),
        _octal(ti.uid, 8),
        _octal(ti.gid, 8),
        _octal(ti.size, 12),
        _octal(ti.mtime, 12),
    )
    link = _field(ti.linkname, 100)
    if (
        link is None
        or any(p is None for p in parts)
        or ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
    ):
        return None
    head = b"".join(p for p in parts if p is not None)
    buf = head + b" " * 8 + ti.type + link + _MAGIC + _EMPTY_OWNER_AND_DEV
    chksum = sum(buf)
    return buf[:148] + b"%06o\0 " % chksum + buf[156:]


class Reader(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Writer(Protocol):
    def write(self, data: memoryview, /) -> object: ...


def member_header(ti: tarfile.TarInfo, encoding: str = tarfile.ENCODING) -> bytes:
    """The header bytes ``tarfile.addfile`` writes for ``ti`` in PAX format (512 bytes,
    or more when PAX extended records are needed)."""
    return header(ti) or ti.tobuf(tarfile.PAX_FORMAT, encoding, "surrogateescape")


_local = threading.local()


def _buffer() -> memoryview:
    """This thread's reusable buffer: a header, a chunk of data and its padding."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(BLOCK + CHUNK + BLOCK))
    return view


def readinto_full(data: Reader, view: memoryview) -> int:
    """Fill ``view`` from ``data``; fewer bytes only at end of file."""
    got = 0
    while got < len(view):
        n = data.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def add(tar: tarfile.TarFile, ti: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
    """Append ``ti`` (and ``ti.size`` bytes of ``data``) to ``tar``.

    The sink gets views of one reused buffer: it must copy what it keeps.
    """
    head = header(ti)
    if head is None:
        tar.addfile(ti, data)
        tar.members.clear()  # type: ignore[attr-defined]
        return
    assert tar.fileobj is not None
    sink = cast(Writer, tar.fileobj)
    size = ti.size if data is not None else 0
    pad = -size % BLOCK
    view = _buffer()
    view[:BLOCK] = head
    pos, left = BLOCK, size
    while left:
        assert data is not None
        want = min(left, BLOCK + CHUNK - pos)
        got = readinto_full(cast(Reader, data), view[pos : pos + want])
        if got < want:
            raise OSError(f"{ti.name} shrank while it was read")
        pos += got
        left -= got
        if left:
            sink.write(view[:pos])
            pos = 0
    view[pos : pos + pad] = _ZEROS[:pad]
    sink.write(view[: pos + pad])
    tar.offset += BLOCK + size + pad
