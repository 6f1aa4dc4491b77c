"""Layers packed on demand, in one pass, into a :class:`BlockWriter`.

A layer's exact size is known before it is packed (:meth:`LazyLayer.plan`: a
:class:`TreeLayer` from ``lstat`` alone, see :mod:`vmbuild.layers.tarplan`), so an
archive can give the layer's header first and hash the layer while writing it. A file
whose size differs from the planned one when it is read fails the build: the archive
would not hold what its header promised. (A file whose content changes but not its
size is packed as read; its bytes and the diff_id hashed from them still agree.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from vmbuild.errors import ImageError
from vmbuild.layers.blocks import BlockWriter
from vmbuild.layers.tarplan import BLOCK, TarPlan, plan_tree
from vmbuild.oci.layer import Owner
from vmbuild.oci.tree import Tree

HINT = "run the build again when the input files are no longer changing"


class LazyLayer(Protocol):
    """A plain layer tar whose size is known before its bytes are made."""

    def plan(self) -> int:
        """The exact size of the tar, from metadata."""
        ...

    def write(self, out: BlockWriter) -> None:
        """Write the tar: exactly :meth:`plan` bytes, or raise :class:`ImageError`."""
        ...

    # As a blob (:class:`vmbuild.oci.image.Blob`): packed again on each copy.
    @property
    def size(self) -> int: ...

    def copy_to(self, sink: BinaryIO) -> None: ...


def copy_file(out: BlockWriter, host: str | Path, size: int, offset: int = 0) -> None:
    """Write ``size`` bytes of ``host``: the whole file, or a range from ``offset`` (a
    blob inside an archive). Fails if the file's size is not what was planned."""
    try:
        with open(host, "rb", buffering=0) as f:
            now = os.fstat(f.fileno()).st_size
            fits = now >= offset + size if offset else now == size
            if offset:
                f.seek(offset)
            got = out.fill(f, size) if fits else -1
    except OSError as exc:
        raise ImageError(f"cannot read {host}: {exc.strerror}", "check the input") from exc
    if got != size:
        raise ImageError(
            f"{host} changed while the image was being written "
            f"(size {offset + size} when the layer was planned, {now} when read)",
            HINT,
        )


class TreeLayer:
    """A layer packed from a :class:`Tree` with a fixed mtime and owner."""

    def __init__(self, tree: Tree, mtime: int, owner: Owner):
        self.tree = tree
        self.mtime = mtime
        self.owner = owner
        self._plan: TarPlan | None = None

    def plan(self) -> int:
        if self._plan is None:
            self._plan = plan_tree(self.tree, self.mtime, self.owner)
        return self._plan.size

    def write(self, out: BlockWriter) -> None:
        self.plan()
        plan, self._plan = self._plan, None  # headers are not kept once written
        assert plan is not None
        start = out.position
        for member in plan.members:
            out.write(member.header)
            if member.size:
                copy_file(out, member.host, member.size)
                out.zeros(-member.size % BLOCK)
        end = plan.size - (out.position - start)  # two zero blocks and record padding
        assert 2 * BLOCK <= end < 2 * BLOCK + 10240, end
        out.zeros(end)  # (written again, the layer is planned again)

    @property
    def size(self) -> int:
        return self.plan()

    def copy_to(self, sink: BinaryIO) -> None:
        with BlockWriter(sink) as out:
            self.write(out)


class FileLayer:
    """A layer tar already on disk (the customisation layer packed under fakeroot)."""

    def __init__(self, path: Path):
        self.path = path
        self._size: int | None = None

    def plan(self) -> int:
        if self._size is None:
            try:
                self._size = self.path.stat().st_size
            except OSError as exc:
                raise ImageError(
                    f"cannot read {self.path}: {exc.strerror}", "check the input"
                ) from exc
        return self._size

    def write(self, out: BlockWriter) -> None:
        copy_file(out, self.path, self.plan())

    @property
    def size(self) -> int:
        return self.plan()

    def copy_to(self, sink: BinaryIO) -> None:
        with BlockWriter(sink) as out:
            self.write(out)


class _Null:
    def write(self, data: memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def diff_id_of(layer: LazyLayer) -> str:
    """The layer's diff_id, by packing it into a sink that only hashes."""
    with BlockWriter(_Null()) as out:
        digest = out.begin_hash()
        layer.write(out)
        out.end_hash()
        return out.result(digest)
