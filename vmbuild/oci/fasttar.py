"""Tar headers without :class:`tarfile.TarFile`'s per-member cost.

``TarInfo.tobuf`` costs tens of microseconds a member (header objects, PAX checks),
which dominates packing trees of many small files. For a member that needs no PAX
record (ASCII names and link names of at most 100 bytes, ASCII user and group names of
at most 32, no xattrs, numbers that fit their octal fields) :func:`header` builds the
very same ustar header ``tarfile`` would write in PAX format, byte for byte;
:func:`member_header` falls back to ``tarfile`` for anything else.
"""

from __future__ import annotations

import tarfile

_NUL = b"\0"
_MAGIC = b"ustar\x0000"
# devmajor, devminor (empty unless a device), prefix, padding
_EMPTY_DEV_AND_PREFIX = b"\0" * (8 + 8 + 155 + 12)


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
    if ti.pax_headers or not isinstance(ti.mtime, int):
        return None
    owners = _field(ti.uname, 32), _field(ti.gname, 32)
    if owners[0] is None or owners[1] is None:
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
    buf = head + b" " * 8 + ti.type + link + _MAGIC + owners[0] + owners[1]
    buf += _EMPTY_DEV_AND_PREFIX
    chksum = sum(buf)
    return buf[:148] + b"%06o\0 " % chksum + buf[156:]


def member_header(ti: tarfile.TarInfo, encoding: str = tarfile.ENCODING) -> bytes:
    """The header bytes ``tarfile.addfile`` writes for ``ti`` in PAX format (512 bytes,
    or more when PAX extended records are needed)."""
    return header(ti) or ti.tobuf(tarfile.PAX_FORMAT, encoding, "surrogateescape")
