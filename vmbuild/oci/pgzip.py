"""Block-parallel gzip with zlib, the way pigz does it, for the higher gzip levels.

The input is cut into fixed 1 MiB blocks; each is deflated on its own thread with the
previous block's last 32 KiB as its dictionary and ends with a sync flush (the last one
finishes the stream), and the pieces are written in order. The output is a single
ordinary gzip member whose bytes depend only on the data and the level, never on the
number of threads; its size is what ``pigz`` gets at the same level.
"""

from __future__ import annotations

import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from isal import isal_zlib

PIECE = 1 << 20
WINDOW = 1 << 15
# gzip header: deflate, no flags, mtime 0, no extra flags, OS unknown
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(chunk: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(chunk) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzipWriter:
    """A write-only stream gzip-compressing into ``sink`` on ``threads`` threads."""

    def __init__(self, sink: BinaryIO, level: int, threads: int):
        self._sink = sink
        self._level = level
        self._threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="vmbuild-gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buf = bytearray()
        self._prev = b""
        self._crc = 0
        self._size = 0
        self._closed = False
        sink.write(HEADER)

    def _submit(self, chunk: bytes, last: bool) -> None:
        self._crc = isal_zlib.crc32(chunk, self._crc)
        self._size += len(chunk)
        self._pending.append(self._pool.submit(_deflate, chunk, self._prev, self._level, last))
        self._prev = chunk[-WINDOW:]
        while len(self._pending) > 2 * self._threads:
            self._sink.write(self._pending.popleft().result())

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        while len(self._buf) >= PIECE:
            self._submit(bytes(self._buf[:PIECE]), last=False)
            del self._buf[:PIECE]
        return len(data)

    def flush(self) -> None:
        """Blocks are only complete at close; flushing passes on what is finished."""

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(bytes(self._buf), last=True)
            self._buf.clear()
            while self._pending:
                self._sink.write(self._pending.popleft().result())
            self._sink.write(self._crc.to_bytes(4, "little"))
            self._sink.write((self._size & 0xFFFFFFFF).to_bytes(4, "little"))
            self._sink.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
