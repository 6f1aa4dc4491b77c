"""Writing a stream into a pipe with file data moved, not copied (``splice``).

The headers and padding of a tar are small and go through a buffer; a file's data goes
from the page cache into the pipe as page references (``splice(2)``), so the process
never copies it: the reader's one copy is the only one. Nothing is hashed here (the
diff_ids come from :mod:`vmbuild.streaming.hashpool`).

A page passed this way is read by the consumer later: a file changed right after being
spliced could reach the reader changed. :meth:`FdWriter.drain` waits until the reader has
taken everything, so that a check of the inputs made after it covers every byte sent.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import stat
import termios
import time
from typing import BinaryIO

from vmbuild.oci.inputs import cannot_read, changed, open_range
from vmbuild.oci.layer import write_zeros

FLUSH_AT = 64 << 10
SPLICE_MAX = 1 << 20


def pipe_fd(sink: BinaryIO) -> int | None:
    """The descriptor of ``sink`` if it is a pipe (after flushing what it buffered)."""
    try:
        fd = sink.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError):  # in memory, closed, no descriptor
        return None
    if not is_pipe:
        return None
    sink.flush()
    return fd


class FdWriter:
    """An :class:`~vmbuild.oci.sinks.TarSink` for the write end of a pipe."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self._buf += data
        if len(self._buf) >= FLUSH_AT:
            self.flush()
        return len(data)

    def zeros(self, n: int) -> None:
        write_zeros(self, n)

    def flush(self) -> None:
        view = memoryview(self._buf)
        done = 0
        try:
            while done < len(view):
                try:
                    done += os.write(self.fd, view[done:])
                except BlockingIOError:  # a pipe someone made non-blocking
                    self._wait()
        finally:
            view.release()
            del self._buf[:done]

    def _wait(self) -> None:
        """Wait until the pipe has room (for a pipe in non-blocking mode)."""
        watch = select.poll()
        watch.register(self.fd, select.POLLOUT)
        watch.poll()

    def copy_file(self, host: str | os.PathLike[str], size: int, offset: int = 0) -> None:
        self.flush()
        left = size
        with open_range(host, size, offset) as f:
            src = f.fileno()
            while left:
                pos = offset + size - left
                try:
                    got = os.splice(src, self.fd, min(left, SPLICE_MAX), offset_src=pos)
                except BlockingIOError:
                    self._wait()
                    continue
                except BrokenPipeError:
                    raise
                except OSError as exc:
                    raise cannot_read(host, exc) from exc
                if not got:
                    raise changed(host, offset + size, pos)
                left -= got

    def drain(self, poll: float = 0.001) -> None:
        """Flush, then wait until the reader has taken every byte from the pipe."""
        self.flush()
        count = array.array("i", [0])
        watch = select.poll()
        watch.register(self.fd, select.POLLOUT)
        while True:
            fcntl.ioctl(self.fd, termios.FIONREAD, count, True)
            if not count[0]:
                return
            if any(ev & select.POLLERR for _fd, ev in watch.poll(0)):  # no reader left
                raise BrokenPipeError(32, "Broken pipe")
            time.sleep(poll)
