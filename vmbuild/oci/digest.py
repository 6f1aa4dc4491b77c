"""sha256 digests (the hashing tee is :mod:`vmbuild.oci.sinks`), and :class:`Coalescer`.

A digest read from an image (a diff_id, a descriptor's ``digest``) is checked with
:func:`check_digest` where it is read; :func:`hex_of`, which member and file names are
built from, takes checked digests only.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

from vmbuild.errors import ImageError
from vmbuild.oci.names import DIGEST_RE

# The OCI digest grammar (algorithm ":" encoded): a digest of another algorithm is
# well-formed but not one vmbuild can check.
GRAMMAR_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
CHUNK = 1 << 20


def is_digest(value: object) -> bool:
    """Whether ``value`` is ``sha256:`` and 64 lowercase hex digits (nothing more)."""
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def check_digest(value: object, where: str) -> str:
    """``value`` if it is a sha256 digest; otherwise one ImageError naming ``where``."""
    if is_digest(value):
        assert isinstance(value, str)
        return value
    shown = repr(value) if len(repr(value)) <= 90 else repr(value)[:87] + "..."
    if isinstance(value, str) and GRAMMAR_RE.fullmatch(value):
        raise ImageError(
            f"{where}: digest {shown} is not a sha256 digest",
            "vmbuild reads sha256 digests only (sha256: and 64 lowercase hex digits)",
        )
    raise ImageError(
        f"{where}: {shown} is not a valid digest",
        "the image is corrupt or crafted (a digest is sha256: and 64 lowercase hex digits)",
    )


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def of_file(path: Path, offset: int = 0, size: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return "sha256:" + h.hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; anything else is refused (names are built from it)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest[len("sha256:") :]


class Coalescer:
    """Gathers small writes into blocks of about ``size`` bytes before passing them on."""

    def __init__(self, sink: BinaryIO, size: int = 1 << 20):
        self._sink = sink
        self._buf = bytearray()
        self._size = size
        self._pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self._pos += n
        if not self._buf and n >= self._size:
            self._sink.write(data)
            return n
        self._buf += data
        if len(self._buf) >= self._size:
            self._sink.write(bytes(self._buf))
            self._buf.clear()
        return n

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        if self._buf:
            self._sink.write(bytes(self._buf))
            self._buf.clear()
        self._sink.flush()

    def writable(self) -> bool:
        return True
