"""Streams a blob passes through: hashing, inflating (gzip, zstd), and the cached-blob
view that inflates a layer into an archive while checking the blob's digest again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard
from isal import isal_zlib

from vmbuild.errors import RegistryError
from vmbuild.oci.compress import Compression, sniff

CHUNK = 1 << 20
OUT_CHUNK = 8 << 20
# isal's stub types ``error`` as an instance; it is the exception class IsalError.
INFLATE_ERRORS: tuple[type[Exception], ...] = (
    cast(type[Exception], isal_zlib.error),
    zstandard.ZstdError,
)


class Inflater(Protocol):
    def feed(self, data: memoryview | bytes) -> None: ...
    def finish(self) -> None: ...


class Gunzip:
    """Inflates gzip (any number of members) into ``write``, bounded output per step."""

    def __init__(self, write: Callable[[bytes], object]):
        self._write = write
        self._d = isal_zlib.decompressobj(31)

    def feed(self, data: memoryview | bytes) -> None:
        while data:
            self._write(self._d.decompress(data, OUT_CHUNK))
            data = self._d.unconsumed_tail
            while data and not self._d.eof:
                self._write(self._d.decompress(data, OUT_CHUNK))
                data = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data
                self._d = isal_zlib.decompressobj(31)
                if not rest.strip(b"\0"):
                    return
                data = rest

    def finish(self) -> None:
        tail = self._d.flush()
        if tail:
            self._write(tail)


class _Writer:
    def __init__(self, write: Callable[[bytes], object]):
        self.write = write


class Unzstd:
    def __init__(self, write: Callable[[bytes], object]):
        sink = cast(BinaryIO, _Writer(write))
        dctx = zstandard.ZstdDecompressor()
        self._w = dctx.stream_writer(sink, write_size=OUT_CHUNK, closefd=False)

    def feed(self, data: memoryview | bytes) -> None:
        self._w.write(data)

    def finish(self) -> None:
        pass  # the writer passes on what it inflates as it goes


def inflater(kind: Compression, write: Callable[[bytes], object]) -> Inflater | None:
    if kind == "gzip":
        return Gunzip(write)
    if kind == "zstd":
        return Unzstd(write)
    return None


def sniff_file(path: Path) -> Compression:
    with open(path, "rb") as f:
        return sniff(f.read(4))


class Pipe:
    """Hashes a blob's bytes, passes them to ``store``, and with ``unpack`` inflates them
    to hash and count the layer tar (its diff_id and size); the tar is not kept."""

    def __init__(self, store: BinaryIO | None, unpack: bool):
        self._store = store
        self._unpack = unpack
        self.hash = hashlib.sha256()
        self.size = 0
        self.compression: Compression | None = None
        self._inflate: Inflater | None = None
        self.diff_hash = hashlib.sha256()
        self.plain_size = 0
        self.inflate_error: str | None = None

    def _plain(self, data: bytes) -> None:
        if data:
            self.diff_hash.update(data)
            self.plain_size += len(data)

    def feed(self, data: memoryview) -> None:
        if self.compression is None:
            self.compression = sniff(bytes(data[:4]))
            if self._unpack:
                self._inflate = inflater(self.compression, self._plain)
        self.hash.update(data)
        self.size += len(data)
        if self._store is not None:
            self._store.write(data)
        if self._inflate is not None:
            try:
                self._inflate.feed(data)
            except INFLATE_ERRORS as exc:
                self._inflate, self.inflate_error = None, str(exc)

    def finish(self) -> None:
        if self._inflate is not None:
            try:
                self._inflate.finish()
            except INFLATE_ERRORS as exc:
                self._inflate, self.inflate_error = None, str(exc)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    @property
    def diff_id(self) -> str:
        if self.compression == "none":
            return self.digest
        return "sha256:" + self.diff_hash.hexdigest()


@dataclass(frozen=True)
class CachedBlob:
    """A blob in the cache, copied out as stored or (``unpack``) as its layer tar.

    Either way its bytes are hashed again on the way and must still match ``digest``.
    """

    path: Path
    digest: str
    compression: Compression
    stored_size: int
    plain_size: int
    unpack: bool
    diff_id: str = ""

    @property
    def size(self) -> int:
        return self.plain_size if self.unpack else self.stored_size

    def copy_to(self, sink: BinaryIO) -> None:
        h = hashlib.sha256()
        written = 0

        def write(data: bytes | memoryview) -> None:
            nonlocal written
            written += len(data)
            if written > self.size:
                raise self._changed()
            sink.write(data)

        unpack = inflater(self.compression, write) if self.unpack else None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            with open(self.path, "rb") as f:
                while n := f.readinto(buf):
                    chunk = view[:n]
                    h.update(chunk)
                    if unpack is None:
                        write(chunk)
                    else:
                        unpack.feed(chunk)
                if unpack is not None:
                    unpack.finish()
        except INFLATE_ERRORS as exc:
            raise self._changed() from exc
        if written != self.size or "sha256:" + h.hexdigest() != self.digest:
            raise self._changed()

    def _changed(self) -> RegistryError:
        self.path.unlink(missing_ok=True)
        return RegistryError(
            f"the cached blob {self.digest} changed on disk; it was removed",
            "run the command again to fetch it anew",
        )
