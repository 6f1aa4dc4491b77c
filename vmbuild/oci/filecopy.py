"""A byte range of one file into another, by the kernel where both are files.

Writing an image copies each base layer byte for byte into the output. Through Python
that is a read and a write per MiB, all of it CPU; ``copy_file_range``
has the kernel do it (without leaving the page cache, or as a reflink on file systems
that share extents), ``sendfile`` where that is refused (another file system on old
kernels, special files). A sink that is a file says so by having ``copy_range``
(:class:`RangeSink`); any other sink gets the bytes through ``write``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import BinaryIO, Protocol, runtime_checkable

CHUNK = 1 << 20
# what copy_file_range / sendfile raise where they cannot copy these two files: try the next
NOT_HERE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


class EndedEarly(OSError):
    """The source file holds fewer bytes than the range asked for (it was truncated)."""

    def __init__(self, missing: int):
        super().__init__(errno.EIO, f"the file ended {missing} bytes early")


@runtime_checkable
class RangeSink(Protocol):
    """A sink that can take a file's bytes without them passing through Python."""

    def copy_range(self, fd: int, offset: int, size: int, /) -> None:
        """``size`` bytes of ``fd`` from ``offset``, appended; OSError if it ends early."""
        ...


def copy_range(sink: BinaryIO | RangeSink, fd: int, offset: int, size: int) -> None:
    """``size`` bytes of the file ``fd`` from ``offset`` into ``sink``."""
    if isinstance(sink, RangeSink):
        sink.copy_range(fd, offset, size)
        return
    done = 0
    while done < size:
        chunk = os.pread(fd, min(CHUNK, size - done), offset + done)
        if not chunk:
            raise EndedEarly(size - done)
        sink.write(chunk)
        done += len(chunk)


def kernel_copy(src: int, dst: int, offset: int, size: int) -> None:
    """``size`` bytes of ``src`` from ``offset`` written at ``dst``'s position (which
    moves on by ``size``); ``src``'s own position is left alone."""
    done = _copy_file_range(src, dst, offset, size)
    if done < size:
        done += _sendfile(src, dst, offset + done, size - done)
    while done < size:
        chunk = os.pread(src, min(CHUNK, size - done), offset + done)
        if not chunk:
            raise EndedEarly(size - done)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        done += len(chunk)


def _copy_file_range(src: int, dst: int, offset: int, size: int) -> int:
    return _by_kernel(lambda at, n: os.copy_file_range(src, dst, n, at), offset, size)


def _sendfile(src: int, dst: int, offset: int, size: int) -> int:
    return _by_kernel(lambda at, n: os.sendfile(dst, src, at, n), offset, size)


def _by_kernel(call: Callable[[int, int], int], offset: int, size: int) -> int:
    """How many of ``size`` bytes from ``offset`` ``call(offset, count)`` copied before
    the kernel refused these files (0 if at once: the caller tries the next way)."""
    done = 0
    while done < size:
        try:
            n = call(offset + done, size - done)
        except OSError as exc:
            if exc.errno in NOT_HERE:
                return done
            raise
        if n == 0:
            raise EndedEarly(size - done)
        done += n
    return done
