"""Checking a layer while its bytes pass: digest, diff_id and every member's name.

:func:`check_layer` reads a layer blob (compressed or not) to its end, once. It hashes
the bytes as read (the blob's digest) and as decompressed (the diff_id), walks the tar's
headers with :mod:`tarfile` (the reader the rest of vmbuild uses, so both agree on what
the members are) and checks each name and link target with :mod:`vmbuild.oci.safety`.
The bytes can be passed on meanwhile, as read (``copy``) or decompressed (``plain``).
Each of these is one :class:`~vmbuild.errors.ImageError`:

- a digest or diff_id that does not match the bytes;
- bytes that are not a tar, a corrupt header part-way, or data that ends inside a
  member: never read as an empty or shorter layer;
- an absolute name or one climbing out with ``..``, a symlink whose relative target
  climbs out of the root, a hard link whose target is not (a link to) a regular file
  of the layer; a pax or GNU long-name record over 1 MiB.

A tar that ends after a member without its end-of-archive blocks is read to that
member, as container runtimes read it.

:class:`CheckedBlob` is a base image layer's blob that runs the check the first time its
bytes are read, whichever way (copied into an output, or decompressed for a merge or
the build VM), and not again.
"""

from __future__ import annotations

import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self, cast

import zstandard
from isal import isal_zlib

from vmbuild.errors import ImageError
from vmbuild.oci.compress import Compression, decompressor
from vmbuild.oci.image import BlobRef
from vmbuild.oci.safety import check_member, whiteout_target
from vmbuild.oci.sinks import HashingReader, SinkFailed
from vmbuild.oci.tarstream import TAR_BLOCK

CHUNK = 1 << 20
# tarfile ends its walk quietly on these, past the first header, as at the archive's end
BAD_ENDS: tuple[type[BaseException], ...] = tuple(
    getattr(tarfile, name) for name in ("TruncatedHeaderError", "InvalidHeaderError")
)
MAX_RECORD = 1 << 20  # a pax or GNU long-name record (Go's archive/tar allows as much)
READ_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    zstandard.ZstdError,
    cast(type[BaseException], isal_zlib.error),
)


@dataclass(frozen=True)
class Checked:
    """What a checked layer's bytes hash to, and how many there were."""

    digest: str  # sha256 of the blob as read
    size: int
    diff_id: str  # sha256 of the plain tar
    plain_size: int


class _Forward:
    """A stream that :mod:`tarfile` can seek in, forward only. It reads ``src`` a chunk
    at a time (headers come from the chunk in memory); a skip over a large member reads
    and drops its data. The bytes just before the position are kept, for the one step
    back :meth:`tarfile.TarFile.next` takes."""

    KEEP = 2 * TAR_BLOCK

    def __init__(self, src: HashingReader, where: str):
        self._src = src
        self._where = where
        self._buf = b""
        self._start = 0  # stream offset of _buf[0]
        self._pos = 0

    @property
    def _end(self) -> int:
        return self._start + len(self._buf)

    def _fill(self, need: int) -> None:
        """Read on until the buffer reaches offset ``need`` (or ``src`` ends)."""
        keep = max(self._start, min(self._pos, self._end) - self.KEEP)
        parts = [self._buf[keep - self._start :]]
        end = self._end
        while end < need:
            data = self._src.read(max(CHUNK, need - end))
            if not data:
                break
            parts.append(data)
            end += len(data)
        self._buf = b"".join(parts)
        self._start = keep

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0 or n > MAX_RECORD + TAR_BLOCK:
            raise ImageError(
                f"{self._where}: a tar header record is larger than {MAX_RECORD} bytes",
                "the layer is malformed",
            )
        if self._pos + n > self._end:
            self._fill(self._pos + n)
        i = self._pos - self._start
        out = self._buf[i : i + n] if i >= 0 else b""
        self._pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise OSError("a layer stream cannot seek from its end")
        if pos < self._start:
            raise OSError("a layer stream cannot seek back")
        if pos - self.KEEP > self._end:  # a skip past the buffer: read and drop
            self._start, self._buf = self._end, b""
            while self._start < pos - self.KEEP:
                data = self._src.read(min(CHUNK, pos - self.KEEP - self._start))
                if not data:
                    break
                self._start += len(data)
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


def _recording(ends: list[tarfile.HeaderError]) -> type[tarfile.TarInfo]:
    """A TarInfo class that notes why each header read failed: tarfile ends its walk
    quietly on a corrupt or truncated header past the first, as at the archive's end."""

    class Recording(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
            try:
                return super().fromtarfile(tar)
            except tarfile.HeaderError as exc:
                ends.append(exc)
                raise

    return Recording


def _resolves(name: str, links: dict[str, str], regular: set[str]) -> bool:
    seen: set[str] = set()
    while name in links:
        if name in seen:
            return False
        seen.add(name)
        name = links[name]
    return name in regular


def _scan(stream: _Forward, where: str) -> None:
    ends: list[tarfile.HeaderError] = []
    regular: set[str] = set()
    links: dict[str, str] = {}
    with tarfile.open(fileobj=cast(BinaryIO, stream), mode="r:", tarinfo=_recording(ends)) as tar:
        while (m := tar.next()) is not None:
            cast(Any, tar).members.clear()  # names are kept below, not every header
            member = check_member(
                m.name,
                where,
                symlink_to=m.linkname if m.issym() else None,
                hardlink_to=m.linkname if m.islnk() else None,
            )
            name = member.name
            if not name:
                continue
            regular.discard(name)
            links.pop(name, None)
            base = name.rpartition("/")[2]
            if base.startswith(".wh.") and base != ".wh..wh..opq":
                whiteout_target(name, base, where)
            if member.hardlink_to is not None:
                links[name] = member.hardlink_to
            elif m.isreg():
                regular.add(name)
        offset = tar.offset
    end = ends[-1] if ends else None
    if isinstance(end, BAD_ENDS):
        raise ImageError(
            f"{where}: corrupt tar header at byte {offset} ({end})",
            "the layer is truncated or damaged",
        )
    for name, target in links.items():
        if not _resolves(name, links, regular):
            raise ImageError(
                f"{where}: hard link {name} -> {target} has no target", "the layer is malformed"
            )


def check_layer(
    raw: BinaryIO,
    compression: Compression,
    where: str,
    *,
    digest: str | None = None,
    diff_id: str | None = None,
    copy: BinaryIO | None = None,
    plain: BinaryIO | None = None,
) -> Checked:
    """Read the layer blob ``raw`` to its end and check it (see the module's text).

    ``digest`` and ``diff_id``, when given, must match. Errors of ``copy`` and
    ``plain`` (a full disk) propagate as they are.
    """
    blob = HashingReader(raw, copy, plain if compression == "none" else None)
    try:
        # a plain layer's bytes are its tar: hashed once
        tar_bytes = (
            blob
            if compression == "none"
            else HashingReader(decompressor(cast(BinaryIO, blob), compression), plain)
        )
        _scan(_Forward(tar_bytes, where), where)
        tar_bytes.drain()
        blob.drain()
    except SinkFailed as failed:
        raise failed.exc from None
    except READ_ERRORS as exc:
        what = "tar" if compression == "none" else f"{compression}-compressed tar"
        raise ImageError(f"{where}: not a readable {what} ({exc})", "the image is corrupt") from exc
    got = Checked(blob.digest, blob.size, tar_bytes.digest, tar_bytes.size)
    if digest is not None and got.digest != digest:
        raise ImageError(
            f"{where}: its bytes hash to {got.digest}, not its digest {digest}",
            "the image is corrupt or was altered",
        )
    if diff_id is not None and got.diff_id != diff_id:
        raise ImageError(
            f"{where}: its tar hashes to {got.diff_id}, not its diff_id {diff_id}",
            "the image is corrupt or was altered",
        )
    return got


class CheckedBlob:
    """A base image layer's bytes (``ref``), checked by :func:`check_layer` the first
    time they are read and trusted from then on. ``digest`` is checked when given, and
    known once checked."""

    def __init__(
        self,
        ref: BlobRef,
        compression: Compression,
        where: str,
        *,
        diff_id: str,
        digest: str | None = None,
    ):
        self.ref = ref
        self.compression = compression
        self.where = where
        self.diff_id = diff_id
        self.digest = digest
        self.checked = False

    @property
    def size(self) -> int:
        return self.ref.size

    @property
    def path(self) -> Path:
        return self.ref.path

    @property
    def offset(self) -> int:
        return self.ref.offset

    def _check(self, copy: BinaryIO | None, plain: BinaryIO | None) -> None:
        with self.ref.reader() as raw:
            got = check_layer(
                raw,
                self.compression,
                self.where,
                digest=self.digest,
                diff_id=self.diff_id,
                copy=copy,
                plain=plain,
            )
        if got.size != self.ref.size:
            raise ImageError(
                f"{self.where}: ended after {got.size} of its {self.ref.size} bytes",
                "the image is truncated",
            )
        self.digest = got.digest
        self.checked = True

    def copy_to(self, sink: BinaryIO) -> None:
        """The blob's bytes as stored into ``sink`` (checked on the way the first time)."""
        if self.checked:
            self.ref.copy_to(sink)
        else:
            self._check(sink, None)

    def verify(self) -> None:
        if not self.checked:
            self._check(None, None)

    def plain_to(self, sink: BinaryIO) -> None:
        """The layer's plain tar into ``sink`` (checked on the way the first time)."""
        if not self.checked:
            self._check(None, sink)
            return
        with self.ref.reader() as raw:
            shutil.copyfileobj(decompressor(raw, self.compression), sink, CHUNK)
