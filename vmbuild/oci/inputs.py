"""Reading a layer's input files as planned, and what goes wrong when they are not.

A layer's header promises a file's size before its data is read; a file whose size is
not that one when it is opened or read fails with :func:`changed` (the archive would
not hold what its header promised), an unreadable one with :func:`cannot_read`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

from vmbuild.errors import ImageError

HINT = "run the build again when the input files are no longer changing"


def changed(host: str | os.PathLike[str], planned: int, now: int) -> ImageError:
    return ImageError(
        f"{host} changed while the image was being written "
        f"(size {planned} when the layer was planned, {now} when read)",
        HINT,
    )


def cannot_read(host: str | os.PathLike[str], exc: OSError) -> ImageError:
    return ImageError(f"cannot read {host}: {exc.strerror}", "check the input")


@contextlib.contextmanager
def open_range(host: str | os.PathLike[str], size: int, offset: int = 0) -> Iterator[io.FileIO]:
    """``host`` opened unbuffered at ``offset``, once its size is known to fit: the
    whole file is ``size`` bytes, or (``offset`` > 0, a blob inside an archive) it holds
    ``size`` bytes from ``offset``."""
    try:
        f = io.FileIO(host, "rb")
    except OSError as exc:
        raise cannot_read(host, exc) from exc
    with f:
        now = os.fstat(f.fileno()).st_size
        if (now < offset + size) if offset else (now != size):
            raise changed(host, offset + size, now)
        if offset:
            f.seek(offset)
        yield f


def fill(f: io.FileIO, view: memoryview, host: str | os.PathLike[str], size: int, at: int) -> None:
    """Read ``view`` full from ``f``: ``at`` bytes into ``host``'s planned ``size``."""
    got = 0
    while got < len(view):
        try:
            n = f.readinto(view[got:])
        except OSError as exc:
            raise cannot_read(host, exc) from exc
        if not n:
            raise changed(host, size, at + got)
        got += n
