"""Checks a pulled layer's tar as its bytes stream by: headers only, nothing extracted.

The archive writer feeds each layer's tar (inflated, if the blob is compressed) through
a :class:`LayerScan` on its way out. File data is skipped, not looked at; each header is
parsed (ustar, GNU long names, PAX records) and its name and link target checked with
:mod:`vmbuild.oci.safety`: no absolute names, no ``..``, no symlink climbing out of the
image, no hard link to a name the layer does not hold. A blob that is not a tar, a
header whose checksum is wrong and a tar that ends inside a member are errors too.
An end-of-archive block ends the layer (what follows it is not looked at); a layer
may also end at a member boundary without one, or be empty, as other readers allow.

Errors are kept (:attr:`LayerScan.error`), not raised while feeding, so the caller can
first say whether the blob matched its digest.
"""

from __future__ import annotations

import zlib

from vmbuild.errors import ImageError, VmbuildError, printable
from vmbuild.oci.safety import check_member
from vmbuild.oci.tarstream import TAR_BLOCK

ZERO_BLOCK = bytes(TAR_BLOCK)
MAX_META = 1 << 20  # a PAX header or GNU long name bigger than this is refused
# Types whose size field does not count data that follows (tarfile and Go agree).
HEADER_ONLY = frozenset(b"123456")
POSIX_MAGIC = b"ustar\x0000"
_MALFORMED = "the layer is malformed"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _number(raw: bytes) -> int:
    """An octal field, or GNU base-256 (high bit set); ValueError if neither."""
    if raw[0] & 0x80:
        if raw[0] & 0x40:
            raise ValueError("negative")
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    return int(_field(raw).strip(b" ") or b"0", 8)


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    # The header's byte sum (its checksum field counted as spaces) modulo 65521 is the
    # low half of its Adler-32, which C computes ten times faster than sum().
    low = zlib.adler32(block) & 0xFFFF
    if (low - 1 - sum(block[148:156]) + 8 * 32 - stored) % 65521 == 0:
        return True
    rest = block[:148] + b" " * 8 + block[156:]
    return sum(b - 256 if b > 127 else b for b in rest) == stored  # old signed sums


def _pax(raw: bytes) -> dict[str, str]:
    """The records of a PAX header body (``LEN key=value\\n`` each)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(raw) and raw[pos] != 0:  # NULs may pad the end
        space = raw.find(b" ", pos)
        length = int(raw[pos:space]) if space > pos and raw[pos:space].isdigit() else 0
        record = raw[space + 1 : pos + length]
        if length <= 0 or pos + length > len(raw) or not record.endswith(b"\n"):
            raise ValueError("malformed PAX record")
        key, eq, value = record[:-1].partition(b"=")
        if not eq:
            raise ValueError("malformed PAX record")
        records[_text(key)] = _text(value)
        pos += length
    return records


class LayerScan:
    """Feed a layer tar's bytes in order (:meth:`feed`), then :meth:`finish`."""

    def __init__(self, where: str):
        self.where = where
        self.error: VmbuildError | None = None
        self._at = 0  # bytes seen so far
        self._head = bytearray()  # a header block arriving in pieces
        self._skip = 0  # file data and padding still to pass over
        self._meta = bytearray()  # a PAX header or GNU long name's body
        self._meta_left = 0
        self._meta_type = 0
        self._meta_pad = 0
        self._pax: dict[str, str] = {}
        self._long: dict[int, str] = {}  # GNU 'L' (name) and 'K' (link target)
        self._ended = False
        self._names: set[str] = set()  # members that are not directories
        self._links: list[tuple[str, str]] = []  # hard links, checked at the end

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.error is None and not self._ended:
            try:
                self._feed(memoryview(data))
            except VmbuildError as exc:  # names are the image's: print them safely
                self.error = ImageError(printable(exc.message), exc.hint)

    def finish(self) -> VmbuildError | None:
        """The first problem found (the end included), or None."""
        if self.error is None and not self._ended:
            pending = self._pax or self._long or self._meta_left
            if self._head or self._skip or pending:
                self.error = ImageError(
                    f"{self.where}: the tar is truncated (it ends inside a member, at byte "
                    f"{self._at})",
                    "the image is corrupt",
                )
        if self.error is None:
            for name, target in self._links:
                if target not in self._names:
                    self.error = ImageError(
                        printable(
                            f"{self.where}: hard link {name} -> {target} has no target in the layer"
                        ),
                        _MALFORMED,
                    )
                    break
        return self.error

    def _feed(self, view: memoryview) -> None:
        pos, end = 0, len(view)
        while pos < end and not self._ended:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
            elif self._meta_left:
                step = min(self._meta_left, end - pos)
                self._meta += view[pos : pos + step]
                self._meta_left -= step
                if not self._meta_left:
                    self._meta_done()
            elif not self._head and end - pos >= TAR_BLOCK:
                step = TAR_BLOCK
                self._at += step
                self._header(bytes(view[pos : pos + TAR_BLOCK]))
                pos += step
                continue
            else:
                step = min(TAR_BLOCK - len(self._head), end - pos)
                self._head += view[pos : pos + step]
                if len(self._head) == TAR_BLOCK:
                    self._at += step
                    pos += step
                    block, self._head = bytes(self._head), bytearray()
                    self._header(block)
                    continue
            self._at += step
            pos += step

    def _corrupt(self, what: str) -> ImageError:
        offset = self._at - TAR_BLOCK
        if offset == 0:
            return ImageError(
                f"{self.where}: the blob is not a tar archive", "the image is corrupt"
            )
        return ImageError(
            f"{self.where}: the tar has a corrupt header at byte {offset} ({what})",
            "the image is corrupt",
        )

    def _header(self, block: bytes) -> None:
        if block == ZERO_BLOCK:
            self._ended = True
            return
        if not _checksum_ok(block):
            raise self._corrupt("bad checksum")
        kind = block[156]
        try:
            size = int(self._pax["size"]) if "size" in self._pax else _number(block[124:136])
        except ValueError:
            raise self._corrupt("bad size") from None
        if size < 0:
            raise self._corrupt("bad size")
        padded = -(-size // TAR_BLOCK) * TAR_BLOCK
        if kind in b"xgLK":
            if size > MAX_META:
                raise self._corrupt(f"a {size}-byte {chr(kind)!r} header")
            self._meta_type, self._meta_left, self._meta_pad = kind, size, padded - size
            self._meta = bytearray()
            if not size:
                self._meta_done()
            return
        self._member(block, kind)
        self._skip = 0 if kind in HEADER_ONLY else padded

    def _meta_done(self) -> None:
        raw = bytes(self._meta)
        self._skip = self._meta_pad
        if self._meta_type in b"LK":
            self._long[self._meta_type] = _text(raw.rstrip(b"\0"))
        elif self._meta_type == ord("x"):
            try:
                self._pax.update(_pax(raw))
            except ValueError:
                raise self._corrupt("malformed PAX header") from None
        # 'g' (global) records set defaults for every member; none of them are names.

    def _member(self, block: bytes, kind: int) -> None:
        name = self._pax.get("path") or self._long.get(ord("L"))
        if name is None:
            name = _text(_field(block[0:100]))
            prefix = _text(_field(block[345:500])) if block[257:265] == POSIX_MAGIC else ""
            name = f"{prefix}/{name}" if prefix else name
        link = self._pax.get("linkpath") or self._long.get(ord("K"))
        if link is None:
            link = _text(_field(block[157:257]))
        self._pax, self._long = {}, {}
        member = check_member(
            name,
            self.where,
            symlink_to=link if kind == ord("2") else None,
            hardlink_to=link if kind == ord("1") else None,
        )
        clean = member.name
        if not clean:
            return  # the root directory itself
        if member.hardlink_to is not None:
            self._links.append((clean, member.hardlink_to))
        if kind != ord("5"):
            self._names.add(clean)
