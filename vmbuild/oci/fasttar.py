"""A fast path for appending plain members to a :class:`tarfile.TarFile`.

``tarfile.addfile`` costs tens of microseconds a member (header objects, a copy of the
TarInfo, PAX checks), which dominates packing trees of many small files. For a member
that needs no PAX record (ASCII names and link names of at most 100 bytes, no xattrs,
numbers that fit their octal fields) :func:`add` builds the very same ustar header
``tarfile`` would write in PAX format, byte for byte, and streams the data itself;
anything else goes through ``tarfile``. Written members are not kept in memory.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20
SMALL = 256 << 10  # members up to this size go out in one write
_NUL = b"\0"
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


def add(tar: tarfile.TarFile, ti: tarfile.TarInfo, data: BinaryIO | None = None) -> None:
    """Append ``ti`` (and ``ti.size`` bytes of ``data``) to ``tar``."""
    buf = header(ti)
    if buf is None:
        tar.addfile(ti, data)
        tar.members.clear()  # type: ignore[attr-defined]
        return
    sink = tar.fileobj
    assert sink is not None
    pad = -ti.size % BLOCK
    if ti.size <= SMALL and data is not None:
        content = data.read(ti.size)
        if len(content) != ti.size:
            raise OSError(f"{ti.name} shrank while it was read")
        sink.write(b"".join((buf, content, _NUL * pad)))
        tar.offset += BLOCK + ti.size + pad
        return
    sink.write(buf)
    left = ti.size
    while left > 0 and data is not None:
        chunk = data.read(min(left, CHUNK))
        if not chunk:
            raise OSError(f"{ti.name} shrank while it was read")
        sink.write(chunk)
        left -= len(chunk)
    if pad:
        sink.write(_NUL * pad)
    tar.offset += BLOCK + ti.size + pad
