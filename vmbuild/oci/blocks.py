"""A writer that fills fixed-size blocks, hashes parts of them and writes them, in three
threads (an :class:`~vmbuild.oci.sinks.TarSink` for any sink, a compressor's included).

The caller copies headers in and reads file data straight into the blocks
(:meth:`BlockWriter.copy_file`: one copy from the page cache, no allocation); one thread
hashes the spans between :meth:`begin_hash` and :meth:`end_hash` (a layer's diff_id,
found while the layer is written), another writes the blocks to the sink in order. A
block is reused once written, so memory stays at ``count`` blocks whatever the size of
the output. A part block goes out when a digest is waited for (:meth:`result`); a sink
that compresses each write as a block gets fixed-size writes from
:func:`vmbuild.oci.compress.compressor`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import stat
import threading
from typing import BinaryIO

from vmbuild.oci.inputs import fill, open_range
from vmbuild.oci.sinks import ByteSink

BUFFER_SIZE = 256 << 10
BUFFER_COUNT = 4
PIPE_SIZE = 1 << 20  # the default pipe-max-size: fewer wake-ups of the reader
_ZEROS = bytes(BUFFER_SIZE)


class Digest:
    """The sha256 of a span, known once the hashing thread has passed its end."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._done = threading.Event()
        self.size = 0
        self.value = ""

    def _update(self, data: memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def _finish(self) -> None:
        self.value = "sha256:" + self._hash.hexdigest()
        self._done.set()


class _Block:
    def __init__(self, size: int):
        self.view = memoryview(bytearray(size))
        self.used = 0
        self.spans: list[tuple[Digest, int, int]] = []  # (digest, start, end); end -1: done


class _Failed(Exception):
    """A helper thread failed; the caller raises its exception instead."""


def widen_pipe(sink: BinaryIO) -> None:
    """Give a pipe sink a 1 MiB buffer where the system allows it (best effort)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no fd, not Linux
        fd = sink.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


class BlockWriter:
    """See the module docstring. Use as a context manager; :meth:`close` waits for all."""

    def __init__(self, sink: ByteSink, size: int = BUFFER_SIZE, count: int = BUFFER_COUNT):
        self._sink = sink
        self._free: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(_Block(size))
        self._to_hash: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        self._to_write: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._block: _Block | None = None
        self._open: tuple[Digest, int] | None = None  # the span being hashed, from offset
        self.position = 0  # bytes written so far
        self._threads = [
            threading.Thread(target=self._hasher, name="vmbuild-hash", daemon=True),
            threading.Thread(target=self._writer, name="vmbuild-write", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- the caller's side -------------------------------------------------------------

    def _current(self) -> _Block:
        if self._block is None:
            block = self._free.get()
            if block is None:
                raise _Failed
            block.used = 0
            block.spans = []
            self._block = block
        return self._block

    def _room(self) -> memoryview:
        """The free part of the current block (never empty)."""
        block = self._current()
        if block.used == len(block.view):
            self.submit()
            block = self._current()
        return block.view[block.used :]

    def submit(self) -> None:
        """Pass the current block on, full or not (its bytes then reach the sink)."""
        block = self._block
        if block is None:
            return
        if self._open is not None:
            digest, start = self._open
            block.spans.append((digest, start, block.used))
            self._open = (digest, 0)
        self._block = None
        self._to_hash.put(block)

    def _advance(self, n: int) -> None:
        assert self._block is not None
        self._block.used += n
        self.position += n

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            room = self._room()
            n = min(len(room), len(view) - done)
            room[:n] = view[done : done + n]
            self._advance(n)
            done += n
        return done

    def zeros(self, n: int) -> None:
        while n:
            k = min(n, len(_ZEROS))
            self.write(_ZEROS[:k])
            n -= k

    def copy_file(self, host: str | os.PathLike[str], size: int, offset: int = 0) -> None:
        """``size`` bytes of ``host`` from ``offset`` (see :func:`open_range`), read
        straight into the blocks."""
        done = 0
        with open_range(host, size, offset) as f:
            while done < size:
                room = self._room()
                want = min(len(room), size - done)
                fill(f, room[:want], host, offset + size, offset + done)
                self._advance(want)
                done += want

    def begin_hash(self) -> Digest:
        assert self._open is None, "spans do not nest"
        digest = Digest()
        self._open = (digest, self._current().used)
        return digest

    def end_hash(self) -> Digest:
        assert self._open is not None
        digest, start = self._open
        block = self._current()
        block.spans.append((digest, start, block.used))
        block.spans.append((digest, -1, -1))
        self._open = None
        return digest

    def result(self, digest: Digest) -> str:
        """The value of ``digest`` (waits for the hashing thread to get there)."""
        if not digest._done.is_set():
            self.submit()
            while not digest._done.wait(0.5):
                self._check()
        return digest.value

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write everything out and stop the threads; raises what a thread raised."""
        with contextlib.suppress(_Failed):  # raised below as what the thread raised
            self.submit()
        self._to_hash.put(None)
        for t in self._threads:
            t.join()
        self._check()
        self._sink.flush()

    def abort(self) -> None:
        self._error = self._error or _Failed()
        self._to_hash.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.close()
            return
        self.abort()
        if isinstance(exc, _Failed):
            first = self._error
            if first is not None and not isinstance(first, _Failed):
                raise first from None

    # -- the threads -------------------------------------------------------------------

    def _hasher(self) -> None:
        while (block := self._to_hash.get()) is not None:
            if self._error is None:
                try:
                    for digest, start, end in block.spans:
                        if end < 0:
                            digest._finish()
                        elif end > start:
                            digest._update(block.view[start:end])
                except BaseException as exc:  # passed to the caller
                    self._fail(exc)
            self._to_write.put(block)
        self._to_write.put(None)

    def _writer(self) -> None:
        while (block := self._to_write.get()) is not None:
            if self._error is None:
                try:
                    self._sink.write(block.view[: block.used])
                except BaseException as exc:  # passed to the caller
                    self._fail(exc)
            self._free.put(block if self._error is None else None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._free.put(None)  # wakes the caller
