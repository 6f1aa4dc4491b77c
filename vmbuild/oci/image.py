"""The in-memory image: a config plus layers whose blobs live in files.

A :class:`BlobRef` names bytes on disk (a whole file, or a byte range inside an
uncompressed archive) without loading them. Base-image layers are kept byte for byte,
compressed or not; the media type records which.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from vmbuild.oci.compress import Compression, suffix
from vmbuild.oci.digest import HashingWriter

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

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
    machine = platform.machine()
    return GOARCH.get(machine, machine)


def layer_media_type(compression: Compression) -> str:
    return MT_OCI_LAYER + suffix(compression)


class _Bounded:
    def __init__(self, f: BinaryIO, size: int):
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n) if n else b""
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        return True


@dataclass(frozen=True)
class BlobRef:
    """``size`` bytes at ``offset`` in ``path``."""

    path: Path
    offset: int
    size: int

    def open(self) -> BinaryIO:
        f = open(self.path, "rb")  # noqa: SIM115 - returned to the caller
        f.seek(self.offset)
        return f

    def read(self) -> bytes:
        with self.open() as f:
            return f.read(self.size)

    @contextlib.contextmanager
    def reader(self) -> Iterator[BinaryIO]:
        """A readable stream of exactly these bytes (it ends where the blob ends)."""
        with self.open() as f:
            yield cast(BinaryIO, _Bounded(f, self.size))

    def copy_to(self, sink: BinaryIO) -> None:
        with self.open() as f:
            left = self.size
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise OSError(f"{self.path} ended early")
                sink.write(chunk)
                left -= len(chunk)

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
    """What an archive writer needs. ``config`` is the full image config JSON object."""

    name: str
    tag: str
    config: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def config_bytes(self) -> bytes:
        return canonical_json(self.config)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def copy_stream(src: BinaryIO, dst: BinaryIO) -> None:
    shutil.copyfileobj(src, dst, 1 << 20)
