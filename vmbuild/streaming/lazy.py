"""Layers packed on demand, in one pass, into an :class:`~vmbuild.streaming.packing.TarSink`.

A layer's exact size and every header are known before it is packed
(:meth:`LazyLayer.tar_plan`: a :class:`TreeLayer` from ``lstat`` alone, see
:mod:`vmbuild.oci.tarplan`), so an archive can give the layer's header first, and
one plan can be both written and hashed (:mod:`vmbuild.streaming.hashpool`). A file whose
size differs from the planned one when it is read fails the build: the archive would
not hold what its header promised. After the layer is written (and hashed), its
entries are ``lstat``-ed again (:meth:`LazyLayer.verify`): a file changed meanwhile
fails the build.

A tree layer's diff_id is remembered for its tree's fingerprint
(:mod:`vmbuild.streaming.idcache`), so an unchanged layer is written without hashing.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import BinaryIO, Protocol

from vmbuild.errors import ImageError
from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.inputs import HINT
from vmbuild.oci.layer import Owner
from vmbuild.oci.sinks import TarSink
from vmbuild.oci.tarplan import Member, TarPlan, plan_tree, stats_of
from vmbuild.oci.tarstream import TAR_BLOCK
from vmbuild.oci.tree import Tree
from vmbuild.streaming import idcache
from vmbuild.streaming.packing import diff_id_of_plan, pack

__all__ = ["HINT", "FileLayer", "LazyLayer", "TreeLayer", "diff_id_of"]


class LazyLayer(Protocol):
    """A plain layer tar whose bytes are planned before they are made."""

    weight: int  # its expected size in bytes, before it is planned (0: unknown)

    def tar_plan(self) -> TarPlan:
        """The layer's plan, made once and kept until :meth:`release` (thread-safe)."""
        ...

    def exact_size(self) -> int:
        """The exact size of the tar, from metadata."""
        ...

    def known_diff_id(self) -> str | None:
        """The planned layer's diff_id, if known without hashing it."""
        ...

    def write(self, out: TarSink) -> None:
        """Write the tar in one pass: exactly :meth:`exact_size` bytes, or raise ImageError."""
        ...

    def release(self) -> None:
        """Drop the kept plan (its headers); :meth:`verify` still checks against it."""
        ...

    def verify(self) -> None:
        """Fail if an input changed since the layer was planned."""
        ...

    def remember(self, diff_id: str) -> None:
        """Note the diff_id the layer last written turned out to have."""
        ...

    # As a blob (:class:`vmbuild.oci.image.Blob`): packed again on each copy.
    @property
    def size(self) -> int: ...

    def copy_to(self, sink: BinaryIO) -> None: ...


class _Planned:
    """What every kind of lazy layer does the same way, given :meth:`tar_plan`."""

    weight = 0

    def tar_plan(self) -> TarPlan:
        raise NotImplementedError

    def exact_size(self) -> int:
        return self.tar_plan().size

    def known_diff_id(self) -> str | None:
        return None

    def write(self, out: TarSink) -> None:
        pack(self.tar_plan(), out)

    def release(self) -> None:
        pass

    def verify(self) -> None:
        pass

    def remember(self, diff_id: str) -> None:
        pass

    @property
    def size(self) -> int:
        return self.exact_size()

    def copy_to(self, sink: BinaryIO) -> None:
        with BlockWriter(sink) as out:
            self.write(out)


class TreeLayer(_Planned):
    """A layer packed from a :class:`Tree` with a fixed mtime and owner."""

    def __init__(
        self, tree: Tree, mtime: int, owner: Owner, use_cache: bool = True, weight: int = 0
    ):
        self.tree = tree
        self.weight = weight
        self.mtime = mtime
        self.owner = owner
        self.use_cache = use_cache
        self._lock = threading.Lock()
        self._plan: TarPlan | None = None
        self._written: TarPlan | None = None  # the last plan released, members dropped

    def tar_plan(self) -> TarPlan:
        with self._lock:
            if self._plan is None:
                self._plan = plan_tree(self.tree, self.mtime, self.owner)
            return self._plan

    def known_diff_id(self) -> str | None:
        return idcache.load(self.tar_plan()) if self.use_cache else None

    def release(self) -> None:
        with self._lock:
            plan, self._plan = self._plan, None
        if plan is not None:
            self._written = dataclasses.replace(plan, members=[])

    def verify(self) -> None:
        plan = self._written
        if plan is not None and stats_of(self.tree) != plan.stats:
            if self.use_cache:
                idcache.forget(plan)
            raise ImageError("a file of the image changed while it was being written", HINT)

    def remember(self, diff_id: str) -> None:
        if self.use_cache and self._written is not None:
            idcache.store(self._written, diff_id)

    def write(self, out: TarSink) -> None:
        super().write(out)
        self.release()  # (written again, the layer is planned again)
        if self.use_cache:
            self.verify()


class FileLayer(_Planned):
    """A layer tar already on disk (the customisation layer packed under fakeroot): packed
    afresh by each build (no diff_id known), its one member kept, its size checked as it
    is read."""

    def __init__(self, path: Path):
        self.path = path
        self._plan: TarPlan | None = None

    def tar_plan(self) -> TarPlan:
        if self._plan is None:
            try:
                size = self.path.stat().st_size
            except OSError as exc:
                raise ImageError(
                    f"cannot read {self.path}: {exc.strerror}", "check the input"
                ) from exc
            if size % TAR_BLOCK:
                raise ImageError(f"{self.path} is not a tar file", "check the input")
            self._plan = TarPlan([Member(b"", str(self.path), size)], size)
        return self._plan


def diff_id_of(layer: LazyLayer) -> str:
    """The layer's diff_id, by packing its plan into a sink that only hashes."""
    return diff_id_of_plan(layer.tar_plan())
