"""Layers packed on demand, in one pass, into a :class:`BlockWriter`.

A layer's exact size is known before it is packed (:meth:`LazyLayer.plan`: a
:class:`TreeLayer` from ``lstat`` alone, see :mod:`vmbuild.layers.tarplan`), so an
archive can give the layer's header first and hash the layer while writing it. A file
whose size differs from the planned one when it is read fails the build: the archive
would not hold what its header promised. (A file whose content changes but not its
size is packed as read; its bytes and the diff_id hashed from them still agree.)

A tree layer's diff_id is remembered for its tree's fingerprint
(:mod:`vmbuild.layers.idcache`), so an unchanged layer is written without hashing; each
entry is lstat-ed again after writing, and a file changed meanwhile fails the build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from vmbuild.errors import ImageError
from vmbuild.layers import idcache
from vmbuild.layers.blocks import BlockWriter
from vmbuild.layers.tarplan import BLOCK, TarPlan, plan_tree, stats_of
from vmbuild.oci.layer import Owner
from vmbuild.oci.tree import Tree

HINT = "run the build again when the input files are no longer changing"


class LazyLayer(Protocol):
    """A plain layer tar whose size is known before its bytes are made."""

    def plan(self) -> int:
        """The exact size of the tar, from metadata."""
        ...

    def known_diff_id(self) -> str | None:
        """The planned layer's diff_id, if known without hashing it."""
        ...

    def write(self, out: BlockWriter) -> None:
        """Write the tar: exactly :meth:`plan` bytes, or raise :class:`ImageError`."""
        ...

    def remember(self, diff_id: str) -> None:
        """Note the diff_id the layer last written turned out to have."""
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

    def __init__(self, tree: Tree, mtime: int, owner: Owner, use_cache: bool = True):
        self.tree = tree
        self.mtime = mtime
        self.owner = owner
        self.use_cache = use_cache
        self._plan: TarPlan | None = None
        self._written: TarPlan | None = None  # members dropped

    def plan(self) -> int:
        if self._plan is None:
            self._plan = plan_tree(self.tree, self.mtime, self.owner)
        return self._plan.size

    def known_diff_id(self) -> str | None:
        self.plan()
        assert self._plan is not None
        return idcache.load(self._plan) if self.use_cache else None

    def remember(self, diff_id: str) -> None:
        if self.use_cache and self._written is not None:
            idcache.store(self._written, diff_id)

    def write(self, out: BlockWriter) -> None:
        self.plan()
        plan, self._plan = self._plan, None  # headers are not kept once written
        assert plan is not None
        self._pack(plan, out)
        plan.members = []
        self._written = plan
        if self.use_cache and stats_of(self.tree) != plan.stats:
            idcache.forget(plan)
            raise ImageError("a file of the image changed while it was being written", HINT)

    def _pack(self, plan: TarPlan, out: BlockWriter) -> None:
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

    def known_diff_id(self) -> str | None:
        return None  # packed afresh by each build

    def write(self, out: BlockWriter) -> None:
        copy_file(out, self.path, self.plan())

    def remember(self, diff_id: str) -> None:
        pass

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
