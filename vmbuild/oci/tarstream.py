"""A minimal sequential tar writer for archives of archives (image tarballs).

Entries are written with fixed metadata (mode 0644/0755, owner 0, one mtime), so
the archive depends only on its names and contents, and a member's bytes can be
produced on demand (a layer that is packed while it is written).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from typing import BinaryIO

from vmbuild.oci.filecopy import copy_range

TAR_BLOCK = 512  # a tar header, and the unit tar pads to (tarfile.BLOCKSIZE)


def archive_header(name: str, size: int, kind: bytes, mtime: int) -> bytes:
    """The header of one member of an image tarball (fixed mode, owner 0, one mtime)."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarStreamWriter:
    def __init__(self, sink: BinaryIO, mtime: int):
        self._sink = sink
        self._mtime = mtime
        self._dirs: set[str] = set()

    def _header(self, name: str, size: int, kind: bytes) -> None:
        self._sink.write(archive_header(name, size, kind, self._mtime))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._header(d + "/", 0, tarfile.DIRTYPE)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), lambda sink: sink.write(data))

    def add_stream(
        self,
        name: str,
        size: int,
        produce: Callable[[BinaryIO], object],
    ) -> None:
        """Add ``name`` whose ``size`` bytes ``produce(sink)`` writes (exactly that many)."""
        self._parents(name)
        self._header(name, size, tarfile.REGTYPE)
        counter = _Counter(self._sink)
        produce(counter)  # type: ignore[arg-type]
        if counter.n != size:
            raise RuntimeError(f"tar member {name}: wrote {counter.n} bytes, promised {size}")
        pad = -size % TAR_BLOCK
        if pad:
            self._sink.write(b"\0" * pad)

    def close(self) -> None:
        self._sink.write(b"\0" * (2 * TAR_BLOCK))
        self._sink.flush()


class _Counter:
    def __init__(self, sink: BinaryIO):
        self._sink = sink
        self.n = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.n += len(data)
        return self._sink.write(data)

    def copy_range(self, fd: int, offset: int, size: int) -> None:
        copy_range(self._sink, fd, offset, size)
        self.n += size

    def flush(self) -> None:
        self._sink.flush()
