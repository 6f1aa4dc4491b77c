"""Streams a blob passes through: hashing, inflating (gzip, zstd), and the cached-blob
view that inflates a layer into an archive while checking the blob's digest again (and,
with ``scan``, the tar's member names: :mod:`.layerscan`)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard
from isal import isal_zlib

from vmbuild.errors import ImageError, RegistryError, VmbuildError
from vmbuild.oci.compress import Compression, sniff
from vmbuild.oci.sinks import HashingWriter
from vmbuild.registry import known
from vmbuild.registry.layerscan import LayerScan

CHUNK = 1 << 20
IN_SLICE = 64 << 10
OUT_CHUNK = 256 << 10  # small enough to stay in the CPU cache from inflate to write
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
        self._open = False  # inside a member (its end not seen yet)

    def feed(self, data: memoryview | bytes) -> None:
        # Small input slices keep ``unconsumed_tail`` (a copy) small when a slice
        # inflates to more than OUT_CHUNK (runs of zeros inflate ~1000-fold).
        view = memoryview(data)
        for start in range(0, len(view), IN_SLICE):
            self._feed(view[start : start + IN_SLICE])

    def _feed(self, data: memoryview | bytes) -> None:
        while data:
            self._open = True
            self._write(self._d.decompress(data, OUT_CHUNK))
            data = self._d.unconsumed_tail
            while data and not self._d.eof:
                self._write(self._d.decompress(data, OUT_CHUNK))
                data = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data
                self._d = isal_zlib.decompressobj(31)
                self._open = False
                if not rest.strip(b"\0"):
                    return
                data = rest

    def finish(self) -> None:
        tail = self._d.flush()
        if tail:
            self._write(tail)
        if self._open and not self._d.eof:
            raise INFLATE_ERRORS[0]("the gzip stream is truncated")


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


class _Feed:
    """An uncompressed stream as an :class:`Inflater` (passes bytes on)."""

    def __init__(self, write: Callable[[bytes], object]):
        self.feed = write

    def finish(self) -> None:
        pass


class SizeGuessWrong(Exception):
    """A layer tar's size guessed from its blob's trailer or header was wrong."""

    def __init__(self, blob: CachedBlob):
        super().__init__(blob.digest)
        self.blob = blob


def guess_plain_size(path: Path, kind: Compression) -> int | None:
    """The layer tar's size as the blob claims it, without inflating: gzip's ISIZE
    trailer (right for a single member under 4 GiB), zstd's frame content size."""
    size = path.stat().st_size
    if kind == "none":
        return size
    with open(path, "rb") as f:
        if kind == "gzip":
            if size < 18:
                return None
            f.seek(size - 4)
            return int.from_bytes(f.read(4), "little")
        head = f.read(18)
    try:
        claimed = zstandard.frame_content_size(head)
    except zstandard.ZstdError:
        return None
    return claimed if claimed >= 0 else None


def count_plain(path: Path, kind: Compression) -> int:
    """The layer tar's exact size, by inflating the blob."""
    total = 0

    def count(data: bytes) -> None:
        nonlocal total
        total += len(data)

    unpack = inflater(kind, count)
    if unpack is None:
        return path.stat().st_size
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                unpack.feed(chunk)
        unpack.finish()
    except INFLATE_ERRORS as exc:
        raise ImageError(  # bad content, not the registry failing: exit 1
            f"layer sha256:{path.name} does not decompress ({exc})", "the image is corrupt"
        ) from exc
    return total


def sniff_file(path: Path) -> Compression:
    with open(path, "rb") as f:
        return sniff(f.read(4))


class Pipe:
    """Hashes a blob's bytes (a :class:`~vmbuild.oci.sinks.HashingWriter`) and passes
    them on to ``store``; notes the compression its first bytes show."""

    def __init__(self, store: BinaryIO | None):
        self._out = HashingWriter(store)
        self.compression: Compression | None = None

    def feed(self, data: memoryview) -> None:
        if self.compression is None:
            self.compression = sniff(bytes(data[:4]))
        try:
            self._out.write(data)
        except OSError as exc:  # not the network's fault: do not retry
            raise VmbuildError(
                f"cannot write to the blob cache: {exc}",
                "free some space or set VMBUILD_CACHE_DIR to another place",
            ) from exc

    @property
    def size(self) -> int:
        return self._out.size

    @property
    def digest(self) -> str:
        return self._out.digest


_DONE = object()


@dataclass(frozen=True)
class CachedBlob:
    """A blob in the cache, copied out as stored or (``unpack``) as its layer tar.

    Unless it was ``verified`` by this process, its bytes are hashed again on the way
    and must still match ``digest``. With ``check_diff``, the tar must hash to
    ``diff_id`` (which is then remembered). Reading, inflating and that hashing run in a
    helper thread, so they overlap with what the sink does (hash and write the archive).
    """

    path: Path
    digest: str
    compression: Compression
    stored_size: int
    plain_size: int
    unpack: bool
    diff_id: str = ""  # "" until known
    verified: bool = False
    check_diff: bool = False
    size_exact: bool = True  # else plain_size is a guess, checked while writing
    scan: bool = False  # check the tar's member names as it passes (see layerscan)

    @property
    def size(self) -> int:
        return self.plain_size if self.unpack else self.stored_size

    def _produce(self, put: Callable[[object], None]) -> None:
        h = None if self.verified else HashingWriter()
        plain = HashingWriter() if self.check_diff else None
        scan = LayerScan(f"layer {self.digest}") if self.scan else None
        if plain is not None or (scan is not None and self.unpack):
            emit = put

            def put(data: object) -> None:
                if plain is not None:
                    plain.write(cast(bytes, data))
                if scan is not None:
                    scan.feed(cast(bytes, data))
                emit(data)

        unpack = inflater(self.compression, put) if self.unpack else None
        # Copied as stored, a layer is still inflated on the side for the scan.
        side = None
        if scan is not None and not self.unpack:
            side = inflater(self.compression, scan.feed) or cast(Inflater, _Feed(scan.feed))
        with open(self.path, "rb") as f:
            while chunk := f.read(OUT_CHUNK):
                if h is not None:
                    h.write(chunk)
                if unpack is None:
                    put(chunk)
                else:
                    unpack.feed(chunk)
                if side is not None:
                    side.feed(chunk)
            for each in (unpack, side):
                if each is not None:
                    each.finish()
        if h is not None and h.digest != self.digest:
            raise self._changed()
        # Only a blob known to be the registry's is blamed for what it holds.
        problem = scan.finish() if scan is not None else None
        if problem is not None:
            raise problem
        if plain is not None:
            got = plain.digest
            if got != self.diff_id:
                raise RegistryError(
                    f"layer {self.digest} unpacks to {got}, but the config says {self.diff_id}",
                    "the image is corrupt",
                )
            # The size inflated, not plain_size: that may be a guess, found wrong later.
            known.remember_unpacked(self.digest, self.compression, got, plain.size)
            if self.compression != "none":
                known.remember_compressed(got, self.compression, self.digest, self.stored_size)

    def copy_to(self, sink: BinaryIO) -> None:
        q: queue.Queue[object] = queue.Queue(maxsize=64)
        stop = threading.Event()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            raise _Stopped()

        def run() -> None:
            try:
                self._produce(put)
                put(_DONE)
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the consumer
                with contextlib.suppress(_Stopped):
                    put(exc)

        worker = threading.Thread(target=run, name="inflate", daemon=True)
        worker.start()
        written = 0
        try:
            while (item := q.get()) is not _DONE:
                if isinstance(item, INFLATE_ERRORS) and not self.verified:
                    raise self._changed() from item  # most likely, not a bad image
                if isinstance(item, INFLATE_ERRORS):
                    self.path.unlink(missing_ok=True)
                    raise ImageError(  # bad content, not the registry failing: exit 1
                        f"layer {self.digest} does not decompress ({item})",
                        "the image is corrupt (its cached copy was removed)",
                    ) from item
                if isinstance(item, BaseException):
                    raise item
                data = cast(bytes, item)
                written += len(data)
                if written > self.size:
                    raise self._wrong_size()
                if data:
                    sink.write(data)
        finally:
            stop.set()
            worker.join()
        if written != self.size:
            raise self._wrong_size()

    def _wrong_size(self) -> Exception:
        return SizeGuessWrong(self) if not self.size_exact else self._changed()

    def _changed(self) -> RegistryError:
        self.path.unlink(missing_ok=True)
        return RegistryError(
            f"the cached blob {self.digest} changed on disk; it was removed",
            "run the command again to fetch it anew",
        )


class _Stopped(Exception):
    """The consumer went away."""
