"""Layers packed on demand, so an image can be streamed without storing its layers.

A docker-archive names each layer by its diff_id and gives its size before its bytes,
so a layer is measured first (packed into a hashing null sink, :meth:`TreeLayer.measure`)
and packed again into the archive (:meth:`TreeLayer.copy_to`). Measurements are kept in
the user's cache, keyed by a fingerprint of the ``lstat`` of every entry (device, inode,
mode, owners, size, mtime and ctime in nanoseconds, link target), so an unchanged tree
is read once per build. After writing, the fingerprint is taken again: a file changed
meanwhile fails the build. A tree with an entry changed in the last few seconds is
"racy" (a second change within the same clock tick would leave its ctime unchanged), as
in git's index: it is never cached, and its second pass is hashed and compared instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from vmbuild import cache
from vmbuild.errors import ImageError
from vmbuild.oci.digest import HashingWriter, of_file
from vmbuild.oci.layer import Owner, open_tar, write_tree
from vmbuild.oci.tree import Tree

CACHE_KIND = "layer-ids-v1"
RACY_NS = 3_000_000_000


class LazyLayer(Protocol):
    """A plain layer tar whose diff_id and size are known after :meth:`measure`."""

    def measure(self) -> tuple[str, int]: ...

    @property
    def size(self) -> int: ...

    def copy_to(self, sink: BinaryIO) -> None: ...


def fingerprint(tree: Tree, mtime: int, owner: Owner) -> tuple[str, bool]:
    """A key that changes whenever any entry of ``tree`` (or how it is packed) changes,
    and whether the tree is racy (an entry changed within :data:`RACY_NS` of now)."""
    parts: list[str] = [CACHE_KIND, str(mtime), f"{owner.uid}:{owner.gid}"]
    newest = 0
    for name in tree.sorted_names():
        src = tree.entries[name]
        try:
            st = src.stat()
        except OSError as exc:
            raise ImageError(f"cannot read {src.host}: {exc.strerror}", "check the input") from exc
        link = os.readlink(src.host) if stat.S_ISLNK(st.st_mode) else ""
        parts.append(
            f"{name}\0{src.host}\0{int(src.follow)}\0{st.st_dev}:{st.st_ino}:{st.st_mode}:"
            f"{st.st_nlink}:{st.st_uid}:{st.st_gid}:{st.st_size}:{st.st_mtime_ns}:"
            f"{st.st_ctime_ns}:{st.st_rdev}\0{link}"
        )
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return cache.key(parts), newest >= time.time_ns() - RACY_NS


def _load(key: str) -> tuple[str, int] | None:
    try:
        data = json.loads(cache.entry(CACHE_KIND, key).read_text())
        return str(data["diff_id"]), int(data["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(key: str, diff_id: str, size: int) -> None:
    path = cache.entry(CACHE_KIND, key)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"diff_id": diff_id, "size": size}))
        os.replace(tmp, path)


def _forget(key: str) -> None:
    with contextlib.suppress(OSError):
        cache.entry(CACHE_KIND, key).unlink()


class TreeLayer:
    """A layer packed from a :class:`Tree` with a fixed mtime and owner."""

    def __init__(self, tree: Tree, mtime: int, owner: Owner, use_cache: bool = True):
        self.tree = tree
        self.mtime = mtime
        self.owner = owner
        self.use_cache = use_cache
        self._measured: tuple[str, int] | None = None
        self._key = ""
        self._racy = True

    def _write(self, sink: BinaryIO | None) -> tuple[str, int]:
        hw = HashingWriter(sink)
        with open_tar(cast(BinaryIO, hw)) as tar:
            write_tree(self.tree, tar, mtime=self.mtime, owner=self.owner)
        return hw.digest, hw.size

    def measure(self) -> tuple[str, int]:
        if self._measured is None:
            self._key, self._racy = fingerprint(self.tree, self.mtime, self.owner)
            if self.use_cache and not self._racy:
                self._measured = _load(self._key)
            if self._measured is None:
                self._measured = self._write(None)
                if self.use_cache and not self._racy:
                    _store(self._key, *self._measured)
        return self._measured

    @property
    def diff_id(self) -> str:
        return self.measure()[0]

    @property
    def size(self) -> int:
        return self.measure()[1]

    def copy_to(self, sink: BinaryIO) -> None:
        """Pack into ``sink``; fails if the bytes can differ from what was measured."""
        expected = self.measure()
        if self._racy:
            got = self._write(sink)
            changed = got != expected
        else:
            with open_tar(cast(BinaryIO, _Counting(sink))) as tar:
                write_tree(self.tree, tar, mtime=self.mtime, owner=self.owner)
            changed = fingerprint(self.tree, self.mtime, self.owner)[0] != self._key
        if changed:
            _forget(self._key)
            raise ImageError(
                f"a file of the image changed while it was being written (layer {expected[0]})",
                "run the build again when the input files are no longer changing",
            )


class _Counting:
    """Passes writes to ``sink`` and counts them (tarfile wants ``tell``)."""

    def __init__(self, sink: BinaryIO):
        self._sink = sink
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._sink.flush()


def steady_malloc() -> None:
    """Keep glibc from trimming and re-faulting the 1 MiB read buffers of the tar writer.

    Without this, half the time of streaming a large file goes to page faults.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return
    mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD: 1 MiB buffers come from the heap
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep up to 64 MiB instead of trimming


class FileLayer:
    """A layer tar already on disk (the customisation layer packed under fakeroot)."""

    def __init__(self, path: Path):
        self.path = path
        self._measured: tuple[str, int] | None = None

    def measure(self) -> tuple[str, int]:
        if self._measured is None:
            self._measured = (of_file(self.path), self.path.stat().st_size)
        return self._measured

    @property
    def size(self) -> int:
        return self.measure()[1]

    def copy_to(self, sink: BinaryIO) -> None:
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                sink.write(chunk)
