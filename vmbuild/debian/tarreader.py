"""A lean reader of the tar streams inside a ``.deb``: each member's header, its data
copied through in large pieces. ``tarfile`` does the same with a TarInfo object and
several layers of buffering per member, which was most of the Python CPU of reading
the ~6,000 members of an image's packages.

What it reads is what ``dpkg-deb`` writes and ``tarfile`` reads from such archives:
ustar and GNU headers (numbers in octal or base-256, a ustar name prefix), GNU long
names and link names (``L``, ``K``) and pax extended headers (``x``: path, linkpath,
size, uid, gid; ``g`` ignored). Sparse members and unknown types are refused. A
member's data follows its header only for regular files, as tarfile reads it.

It only parses: every name is still checked by :mod:`vmbuild.debian.debfile`'s gate
before anything of the member is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vmbuild.errors import ImageError
from vmbuild.oci.tarstream import TAR_BLOCK

CHUNK = 1 << 20
MAX_RECORD = 1 << 20  # a long name, long link or pax record: far more than any needs
_ZERO = bytes(TAR_BLOCK)
REGULAR = (b"0", b"\0", b"7")  # a file (b"7": contiguous, read as a file)
HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
KNOWN = (*REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO)


class TarError(ImageError):
    """A tar stream is malformed (or uses what a .deb does not)."""


@dataclass
class Header:
    name: str
    type: bytes  # the typeflag: b"0" a regular file (as b"\0", b"7"), b"1" a hard link...
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    devmajor: int
    devminor: int

    @property
    def isreg(self) -> bool:
        return self.type in REGULAR


def _text(field: bytes) -> str:
    end = field.find(b"\0")
    return (field if end < 0 else field[:end]).decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A header's number (size, mode, ids, device numbers): never negative, since a
    negative size would make every later read of the stream wrong."""
    if field[0] == 0o377:  # base-256 (GNU) with the sign bit: a negative number
        raise TarError("a negative number in a tar header", "the archive is corrupt")
    if field[0] == 0o200:  # base-256 (GNU), positive
        return int.from_bytes(field[1:], "big")
    end = field.find(b"\0")
    text = (field if end < 0 else field[:end]).strip()
    if text.strip(b"01234567"):  # octal digits only (int() would take "-", "_", "+")
        raise TarError(f"bad number {text!r} in a tar header", "the archive is corrupt")
    return int(text or b"0", 8)


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError("bad pax header record", "the archive is corrupt") from None
        if space < 0 or length <= space - pos or pos + length > len(data):
            raise TarError("bad pax header record", "the archive is corrupt")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _check_sum(buf: bytes) -> None:
    """The header's checksum: its bytes summed with the checksum field as spaces
    (unsigned, or as signed chars, as some old tars wrote it)."""
    checksum = _number(buf[148:156])
    rest = buf[:148] + buf[156:]
    unsigned = sum(rest) + 256
    if checksum != unsigned and checksum != unsigned - 256 * sum(b >= 128 for b in rest):
        raise TarError("a tar header has a bad checksum", "the archive is corrupt")


class TarReader:
    """The members of the tar stream ``f``, in order. The data of a regular member is
    read with :meth:`copy_data` (or skipped when the next member is asked for)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self._left = 0  # data (and padding) of the current member not yet read
        self._size = 0  # the current member's data

    def _exact(self, n: int) -> bytes:
        data = self.f.read(n)
        while len(data) < n:
            more = self.f.read(n - len(data))
            if not more:
                raise TarError("the tar stream ends early", "the archive is truncated")
            data += more
        return data

    def _skip(self) -> None:
        while self._left:
            self._left -= len(self._exact(min(self._left, CHUNK)))

    def copy_data(self, out: BinaryIO) -> None:
        """The current (regular) member's data written to ``out``."""
        size = self._size
        while size > 0:
            if self._left <= CHUNK:  # the rest and the padding in one read
                piece = self._exact(self._left)
                self._left = 0
                out.write(memoryview(piece)[:size])
                size = 0
            else:
                out.write(self._exact(CHUNK))
                self._left -= CHUNK
                size -= CHUNK
        self._skip()

    def _data(self, size: int) -> bytes:
        data = self._exact(-(-size // TAR_BLOCK) * TAR_BLOCK)
        return data[:size]

    def __iter__(self) -> Iterator[Header]:
        longname = longlink = None
        pax: dict[str, str] = {}
        while True:
            self._skip()
            buf = self.f.read(TAR_BLOCK)
            if not buf or buf == _ZERO:
                return  # the end (or an archive without its end blocks, as tarfile allows)
            if len(buf) < TAR_BLOCK:
                buf += self._exact(TAR_BLOCK - len(buf))
            _check_sum(buf)
            kind = buf[156:157]
            size = _number(buf[124:136])
            if kind in (b"L", b"K", b"x", b"g"):
                if size > MAX_RECORD:
                    raise TarError(f"a tar header record of {size} bytes", "the archive is corrupt")
                data = self._data(size)
                if kind == b"L":
                    longname = _text(data)
                elif kind == b"K":
                    longlink = _text(data)
                elif kind == b"x":
                    pax.update(_pax(data))
                continue
            if kind not in KNOWN:
                raise TarError(
                    f"a tar member has the unsupported type {kind!r}", "not a .deb's tar"
                )
            name = _text(buf[0:100])
            if buf[257:263] == b"ustar\0":  # POSIX ustar: a prefix of the name
                prefix = _text(buf[345:500])
                if prefix:
                    name = f"{prefix}/{name}"
            head = Header(
                name=longname if longname is not None else name,
                type=kind,
                mode=_number(buf[100:108]),
                uid=_number(buf[108:116]),
                gid=_number(buf[116:124]),
                size=size,
                linkname=longlink if longlink is not None else _text(buf[157:257]),
                devmajor=_number(buf[329:337]) if kind in (b"3", b"4") else 0,
                devminor=_number(buf[337:345]) if kind in (b"3", b"4") else 0,
            )
            if pax:
                if any(k.startswith("GNU.sparse") for k in pax):
                    raise TarError("a tar member is sparse", "not a .deb's tar")
                head.name = pax.get("path", head.name)
                head.linkname = pax.get("linkpath", head.linkname)
                for key in ("size", "uid", "gid"):
                    if key in pax:
                        value = pax[key]
                        if not value.isascii() or not value.isdigit():
                            raise TarError(f"bad pax {key}", "the archive is corrupt")
                        setattr(head, key, int(value))
            if head.type == b"\0" and head.name.endswith("/"):
                head.type = b"5"  # an old-style directory, as tarfile reads it
            longname = longlink = None
            pax = {}
            self._size = head.size if head.isreg else 0
            self._left = -(-self._size // TAR_BLOCK) * TAR_BLOCK
            yield head
