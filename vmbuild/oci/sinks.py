"""The sink protocols, and the one hashing tee every byte stream is hashed through.

:class:`TarSink` is the one interface every tar writer (:func:`vmbuild.oci.layer.
write_members`, the streaming writer's packer) writes through. Three kinds implement
it: :class:`vmbuild.oci.blocks.BlockWriter` (buffers into blocks, hashes on a thread,
into a file or compressor), :class:`vmbuild.streaming.fdwriter.FdWriter` (a pipe, file
data spliced without copying) and :class:`vmbuild.streaming.packing.HashSink` (only
hashes, for a diff_id). :class:`ByteSink` is what a BlockWriter passes its blocks to.

Bytes that are hashed while they pass (a blob as written, downloaded or read back, a
layer's tar as it inflates) go through :class:`HashingWriter` (written to) or
:class:`HashingReader` (read from): each keeps a sha256 and a byte count of what
passed and hands the bytes on, so no module keeps its own ``hashlib`` tee.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Protocol


class TarSink(Protocol):
    """Where a layer tar's bytes go."""

    def write(self, data: bytes | memoryview, /) -> object: ...

    def zeros(self, n: int, /) -> None: ...

    def copy_file(self, host: str | os.PathLike[str], size: int, offset: int = 0, /) -> None:
        """``size`` bytes of ``host`` from ``offset``; fails if the file is not as planned."""
        ...


class ByteSink(Protocol):
    """A plain writable: a file, a compressor, a hash."""

    def write(self, data: memoryview, /) -> object: ...

    def flush(self) -> None: ...


class Writable(Protocol):
    """Anything bytes can be written to (a file, a compressor, another tee)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Cancelled(Exception):
    """A tee's ``stop`` was set: the work is given up (the build is ending)."""


class SinkFailed(Exception):
    """Writing to a :class:`HashingReader`'s sink failed (``exc``): the fault is the
    sink's (a full disk), not the source's."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exc = exc


class StoppingWriter:
    """Bytes passed on to ``sink`` until ``stop`` is set, then ``cancelled`` raised: a
    :class:`HashingWriter`'s stop without its hash, where the bytes are checked already."""

    def __init__(self, sink: Writable, *, stop: threading.Event, cancelled: type[Exception]):
        self._sink = sink
        self._stop = stop
        self._cancelled = cancelled

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._stop.is_set():
            raise self._cancelled()
        self._sink.write(data)
        return len(data)


class HashingWriter:
    """A write-only file object that hashes and counts bytes, then passes them on.

    ``sink`` may be None to only hash (e.g. to get a diff_id without storing the tar).
    With ``stop``, each write first checks it and raises ``cancelled`` once it is set.
    """

    def __init__(
        self,
        sink: Writable | None = None,
        *,
        stop: threading.Event | None = None,
        cancelled: type[Exception] = Cancelled,
    ):
        self._sink = sink
        self._hash = hashlib.sha256()
        self._stop = stop
        self._cancelled = cancelled
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._stop is not None and self._stop.is_set():
            raise self._cancelled()
        self._hash.update(data)
        n = len(data)
        self.size += n
        if self._sink is not None:
            self._sink.write(data)
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()

    def writable(self) -> bool:
        return True

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


class HashingReader:
    """Reads from ``src``; each byte read is hashed, counted and written to the
    ``sinks`` (an error there is raised as :class:`SinkFailed`)."""

    CHUNK = 1 << 20

    def __init__(self, src: Readable, *sinks: Writable | None):
        self._src = src
        self._sinks = [s for s in sinks if s is not None]
        self._hash = hashlib.sha256()
        self.size = 0

    def _took(self, data: bytes) -> bytes:
        if data:
            self._hash.update(data)
            self.size += len(data)
            for sink in self._sinks:
                try:
                    sink.write(data)
                except Exception as exc:
                    raise SinkFailed(exc) from exc
        return data

    def read(self, n: int | None = -1) -> bytes:
        return self._took(self._src.read(-1 if n is None else n))

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self._took(self._src.read(len(view)))
        view[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read ``src`` to its end."""
        while self.read(self.CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()
