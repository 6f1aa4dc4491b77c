"""The sink protocols: where a layer tar's bytes go, and what a writer hands them to.

:class:`TarSink` is the one interface every tar writer (:func:`vmbuild.oci.layer.
write_members`, the streaming writer's packer) writes through. Three kinds implement
it: :class:`vmbuild.oci.blocks.BlockWriter` (buffers into blocks, hashes on a thread,
into a file or compressor), :class:`vmbuild.streaming.fdwriter.FdWriter` (a pipe, file
data spliced without copying) and :class:`vmbuild.streaming.packing.HashSink` (only
hashes, for a diff_id). :class:`ByteSink` is what a BlockWriter passes its blocks to.
"""

from __future__ import annotations

import os
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
