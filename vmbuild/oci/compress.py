"""Layer and archive compression: gzip (ISA-L, threaded), zstd, or none.

The compressed bytes never depend on the number of threads or cores: ISA-L's threaded
gzip (levels 0-3) and the zlib block compressor (levels 4-9) compress fixed-size blocks
independently (each primed with the previous 32 KiB),
and zstd's multi-threaded mode is deterministic for any worker count >= 1. The gzip
header carries no file name and mtime 0.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO, Literal, cast

from vmbuild.errors import SpecError

# The compressors are imported where they are used: a build writing an uncompressed
# archive (a step-cache hit's) loads none of ISA-L, zstd or the parallel gzip's threads.

Compression = Literal["gzip", "zstd", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("gzip", "zstd", "none")

# gzip levels 0..3 are ISA-L's: level 1, the default, is several times faster than
# pigz -6 for a slightly larger file (bench/bench_pack.py). Levels 4..9 are zlib's,
# block-parallel like pigz (vmbuild.oci.pgzip): level 6 gives pigz -6's size.
GZIP_DEFAULT_LEVEL = 1
GZIP_LEVELS = range(0, 10)
ISAL_MAX_LEVEL = 3
ZSTD_DEFAULT_LEVEL = 3
ZSTD_LEVELS = range(1, 20)
COMPRESS_CHUNK = 1 << 20


def threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_level(kind: Compression) -> int:
    return {"gzip": GZIP_DEFAULT_LEVEL, "zstd": ZSTD_DEFAULT_LEVEL, "none": 0}[kind]


def check_level(kind: Compression, level: int | None) -> int:
    if level is None:
        return default_level(kind)
    allowed = {"gzip": GZIP_LEVELS, "zstd": ZSTD_LEVELS, "none": range(0, 1)}[kind]
    if level not in allowed:
        raise SpecError(
            f"compression level {level} is out of range for {kind}",
            f"use {allowed.start}..{allowed.stop - 1}",
        )
    return level


def suffix(kind: Compression) -> str:
    return {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[kind]


class _NoClose:
    """Passes writes through to ``sink`` but does not close it."""

    def __init__(self, sink: BinaryIO):
        self._sink = sink

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._sink.write(data)

    def flush(self) -> None:
        self._sink.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self._sink.flush()


class FixedChunks:
    """Passes bytes on in writes of exactly ``size`` bytes (the last one shorter, on
    :meth:`flush`), so a sink that compresses each write as a block of its own (ISA-L's
    threaded gzip) gets the same blocks however the bytes came: the compressed output
    then depends on the bytes alone, not on when a :class:`BlockWriter` passed a part
    block on (for example, on what a layer cache knew)."""

    def __init__(self, sink: BinaryIO, size: int = 1 << 20):
        self._sink = sink
        self._size = size
        self._buf = memoryview(bytearray(size))
        self._used = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            if not self._used and len(view) - done >= self._size:  # aligned: no copy
                self._sink.write(view[done : done + self._size])
                done += self._size
                continue
            n = min(self._size - self._used, len(view) - done)
            self._buf[self._used : self._used + n] = view[done : done + n]
            self._used += n
            done += n
            if self._used == self._size:
                self._sink.write(self._buf)
                self._used = 0
        return done

    def flush(self) -> None:
        if self._used:
            self._sink.write(self._buf[: self._used])
            self._used = 0
        self._sink.flush()


@contextlib.contextmanager
def compressor(sink: BinaryIO, kind: Compression, level: int | None = None) -> Iterator[BinaryIO]:
    """A writable stream that compresses into ``sink``; ``sink`` stays open afterwards."""
    lvl = check_level(kind, level)
    if kind == "none":
        yield cast(BinaryIO, _NoClose(sink))
    elif kind == "gzip" and lvl > ISAL_MAX_LEVEL:
        from vmbuild.oci.pgzip import ParallelGzipWriter

        writer = ParallelGzipWriter(sink, lvl, threads())
        try:
            yield cast(BinaryIO, writer)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    elif kind == "gzip":
        from isal import igzip_threaded

        stream = igzip_threaded.open(  # type: ignore[no-untyped-call]
            cast(BinaryIO, _NoClose(sink)),
            "wb",
            compresslevel=lvl,
            threads=threads(),
            block_size=COMPRESS_CHUNK,
        )
        # ISA-L compresses each write as a block of its own: fixed-size writes make the
        # output depend on the bytes alone, not on how the caller happened to cut them.
        fixed = FixedChunks(cast(BinaryIO, stream), COMPRESS_CHUNK)
        try:
            yield cast(BinaryIO, fixed)
            fixed.flush()
        finally:
            stream.close()
    else:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=lvl, threads=threads(), write_checksum=True)
        with cctx.stream_writer(sink, closefd=False) as zw:
            yield cast(BinaryIO, zw)


def sniff(head: bytes) -> Compression:
    """Which compression a blob uses, from its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def decompressor(source: BinaryIO, kind: Compression) -> BinaryIO:
    """A readable stream of the decompressed bytes of ``source``."""
    if kind == "gzip":
        from isal import igzip

        return cast(BinaryIO, igzip.GzipFile(fileobj=source, mode="rb"))  # type: ignore[no-untyped-call]
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            source, closefd=False, read_across_frames=True
        )
        return cast(BinaryIO, reader)
    return source
