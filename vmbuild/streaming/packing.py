"""Packing a planned layer tar into a target, and the target that only hashes.

A :class:`~vmbuild.oci.tarplan.TarPlan` says every byte of a layer: headers, which
file range each member's data comes from, and the tar's size. :func:`pack` writes those
bytes into any :class:`~vmbuild.oci.layer.TarSink`: a :class:`~vmbuild.oci.blocks.BlockWriter`
(copies into blocks for a compressing sink), a :class:`~vmbuild.streaming.fdwriter.FdWriter`
(moves file pages into a pipe without copying them) or a :class:`HashSink` (the diff_id
alone). A file whose size is not the planned one fails with
:func:`~vmbuild.oci.inputs.changed`: the archive would not hold what its header promised.
"""

from __future__ import annotations

import os
import threading

from vmbuild.oci.inputs import fill, open_range
from vmbuild.oci.layer import write_members, write_zeros
from vmbuild.oci.sinks import HashingWriter, TarSink
from vmbuild.oci.tarplan import TarPlan

CHUNK = 1 << 20


def pack(plan: TarPlan, out: TarSink) -> None:
    """Write the tar ``plan`` describes: exactly ``plan.size`` bytes."""
    done = write_members(plan.members, out, end=False)
    out.zeros(plan.size - done)  # end blocks and record padding (none for a tar on disk)


class HashSink(HashingWriter):
    """A :class:`TarSink` that keeps only the sha256 and the size of what it is given
    (the project's one hashing writer, with nothing downstream); it gives up between
    chunks once ``stop`` is set (:class:`~vmbuild.oci.sinks.Cancelled`)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        super().__init__(None, stop=stop)
        self._view: memoryview | None = None

    def zeros(self, n: int) -> None:
        write_zeros(self, n)

    def copy_file(self, host: str | os.PathLike[str], size: int, offset: int = 0) -> None:
        if self._view is None:
            self._view = memoryview(bytearray(CHUNK))
        with open_range(host, size, offset) as f:
            for at in range(0, size, CHUNK):
                view = self._view[: min(CHUNK, size - at)]
                fill(f, view, host, offset + size, offset + at)
                self.write(view)


def diff_id_of_plan(plan: TarPlan, stop: threading.Event | None = None) -> str:
    """The sha256 of the tar ``plan`` describes, read from its files now (raises
    :class:`Cancelled` once ``stop`` is set)."""
    sink = HashSink(stop)
    pack(plan, sink)
    assert sink.size == plan.size, (sink.size, plan.size)
    return sink.digest
