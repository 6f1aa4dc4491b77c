"""Packing a planned layer tar into a target, and the target that only hashes.

A :class:`~vmbuild.oci.tarplan.TarPlan` says every byte of a layer: headers, which
file range each member's data comes from, and the tar's size. :func:`pack` writes those
bytes into any :class:`Out`: a :class:`~vmbuild.layers.blocks.BlockWriter` (copies into
blocks for a compressing sink), a :class:`~vmbuild.layers.fdwriter.FdWriter` (moves file
pages into a pipe without copying them) or a :class:`HashSink` (the diff_id alone).
A file whose size is not the planned one fails with
:func:`~vmbuild.oci.layer.changed`: the archive would not hold what its header promised.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from vmbuild.oci.layer import BLOCK, HINT, RECORD, cannot_read, changed, open_range
from vmbuild.oci.tarplan import TarPlan

__all__ = [
    "HINT",
    "HashSink",
    "Out",
    "cannot_read",
    "changed",
    "diff_id_of_plan",
    "open_range",
    "write_zeros",
]

CHUNK = 1 << 20
_ZEROS = bytes(RECORD + 2 * BLOCK)


class Out(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...

    def zeros(self, n: int, /) -> None: ...

    def copy_file(self, host: str | Path, size: int, offset: int = 0, /) -> None:
        """``size`` bytes of ``host`` from ``offset``; fails if the file is not as planned."""
        ...


def write_zeros(out: Out, n: int) -> None:
    """``n`` zero bytes, through ``out.write`` (at most a record and two blocks a write)."""
    while n > 0:
        k = min(n, len(_ZEROS))
        out.write(_ZEROS[:k])
        n -= k


def pack(plan: TarPlan, out: Out) -> None:
    """Write the tar ``plan`` describes: exactly ``plan.size`` bytes."""
    done = 0
    for member in plan.members:
        out.write(member.header)
        done += len(member.header)
        if member.size:
            out.copy_file(member.host, member.size)
            pad = -member.size % BLOCK
            out.zeros(pad)
            done += member.size + pad
    out.zeros(plan.size - done)  # the end blocks and record padding (none for a file)


class HashSink:
    """An :class:`Out` that keeps only the sha256 and the size of what it is given."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._view: memoryview | None = None
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def zeros(self, n: int) -> None:
        write_zeros(self, n)

    def copy_file(self, host: str | Path, size: int, offset: int = 0) -> None:
        if self._view is None:
            self._view = memoryview(bytearray(CHUNK))
        view = self._view
        left = size
        with open_range(host, size, offset) as f:
            while left:
                try:
                    got = f.readinto(view[: min(left, CHUNK)])
                except OSError as exc:
                    raise cannot_read(host, exc) from exc
                if not got:
                    raise changed(host, offset + size, offset + size - left)
                self.write(view[:got])
                left -= got

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def diff_id_of_plan(plan: TarPlan) -> str:
    """The sha256 of the tar ``plan`` describes, read from its files now."""
    sink = HashSink()
    pack(plan, sink)
    assert sink.size == plan.size, (sink.size, plan.size)
    return sink.digest()
