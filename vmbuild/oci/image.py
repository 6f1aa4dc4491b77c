"""The in-memory image: a config plus layers whose blobs live in files.

A :class:`BlobRef` names bytes on disk (a whole file, or a byte range inside an
uncompressed archive) without loading them. Base-image layers are kept byte for byte,
compressed or not; the media type records which.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol, cast

from vmbuild.oci.compress import Compression, suffix
from vmbuild.oci.filecopy import EndedEarly, copy_range
from vmbuild.oci.layout import MT_OCI_LAYER
from vmbuild.oci.safety import open_beneath
from vmbuild.oci.sinks import HashingWriter

GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_goarch() -> str:
    machine = os.uname().machine  # (platform.machine(), without platform's imports)
    return GOARCH.get(machine, machine)


def layer_media_type(compression: Compression) -> str:
    return MT_OCI_LAYER + suffix(compression)


class Window:
    """``size`` bytes of ``f`` from ``offset``, as a seekable stream that ends there.

    Reads never run past the window, so a tar reader on a layer inside an archive
    sees that layer only (not the archive's next members).
    """

    def __init__(self, f: BinaryIO, offset: int, size: int):
        self._f = f
        self._start = offset
        self._size = size
        self._pos = 0
        self._at = -1  # where ``f`` is, relative to the window (-1: unknown)

    def _left(self, n: int | None) -> int:
        left = max(0, self._size - self._pos)
        return left if n is None or n < 0 else min(n, left)

    def _place(self) -> None:
        if self._at != self._pos:
            self._f.seek(self._start + self._pos)

    def read(self, n: int | None = -1) -> bytes:
        n = self._left(n)
        if not n:
            return b""
        self._place()
        data = self._f.read(n)
        self._pos += len(data)
        self._at = self._pos
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        if base + pos < 0:
            raise OSError(f"seek to {base + pos} before the start of the blob")
        self._pos = base + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def copy_to(self, sink: BinaryIO) -> None:
        """The window's bytes into ``sink`` (by the kernel when it is a file); fewer in
        the file is :class:`~vmbuild.oci.filecopy.EndedEarly`."""
        copy_range(sink, self._f.fileno(), self._start, self._size)

    def fstat(self) -> os.stat_result:
        """The status of the file the window is on (which version of it is read)."""
        return os.fstat(self._f.fileno())


class BlobRef(NamedTuple):
    """``size`` bytes at ``offset`` in ``path``.

    With ``below`` (an image layout directory holding ``path``), the file is opened
    without following any symlink below that directory, and must be a regular file.
    """

    path: Path
    offset: int
    size: int
    below: Path | None = None

    def open(self) -> BinaryIO:
        if self.below is not None:
            rel = self.path.relative_to(self.below).as_posix()
            f = os.fdopen(open_beneath(self.below, rel, str(self.below)), "rb")
        else:
            f = open(self.path, "rb")  # noqa: SIM115 - returned to the caller
        f.seek(self.offset)
        return f

    def read(self) -> bytes:
        with self.open() as f:
            return f.read(self.size)

    @contextlib.contextmanager
    def reader(self) -> Iterator[BinaryIO]:
        """A seekable stream of exactly these bytes (it ends where the blob ends)."""
        with self.window() as w:
            yield cast(BinaryIO, w)

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """:meth:`reader`'s stream as itself: it can also ``fstat`` its file."""
        with self.open() as f:
            yield Window(f, self.offset, self.size)

    def copy_to(self, sink: BinaryIO) -> None:
        """The bytes into ``sink``: by the kernel when it is a file (:mod:`.filecopy`)."""
        with self.window() as w:
            try:
                w.copy_to(sink)
            except EndedEarly as exc:
                raise OSError(f"{self.path} ended early") from exc

    @classmethod
    def whole(cls, path: Path) -> BlobRef:
        return cls(path, 0, path.stat().st_size)


class Blob(Protocol):
    """Bytes of a known size that can be copied out (a file range, or produced on demand)."""

    @property
    def size(self) -> int: ...

    def copy_to(self, sink: BinaryIO) -> None: ...


@dataclass
class Layer:
    """A layer: its diff_id (sha256 of the tar) and the blob as stored.

    ``digest`` (sha256 of the blob) is computed on first use when not given.
    """

    diff_id: str
    blob: Blob
    compression: Compression
    known_digest: str | None = None

    @property
    def media_type(self) -> str:
        return layer_media_type(self.compression)

    @property
    def digest(self) -> str:
        if self.known_digest is None:
            if self.compression == "none":
                self.known_digest = self.diff_id
            else:
                hw = HashingWriter(None)
                self.blob.copy_to(cast(BinaryIO, hw))
                self.known_digest = hw.digest
        return self.known_digest


@dataclass
class Image:
    """What an archive writer needs. ``config`` is the full image config JSON object;
    ``config_raw``, when given, is its bytes as another writer stored them (kept as they
    are, so the image ID stays), else the config is written as :func:`canonical_json`."""

    name: str
    tag: str
    config: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)
    config_raw: bytes | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def config_bytes(self) -> bytes:
        return self.config_raw if self.config_raw is not None else canonical_json(self.config)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
