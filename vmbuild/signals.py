"""SIGTERM and SIGHUP stop vmbuild the way Ctrl-C does, and cleanup is never cut short.

The command line installs :func:`handlers` around a command: SIGINT, SIGTERM and SIGHUP
(CI cancelling a job, ``timeout``, ``docker stop``, a closed terminal) raise
:class:`Terminated`, a :class:`KeyboardInterrupt`, in the main thread, so every
``finally`` and context manager that cleans up after Ctrl-C (the VM's teardown, temporary
directories, ``.part`` files) runs for them too. Only the first signal interrupts; later
ones are noted and dropped, so that the cleanup the first one started can finish.
Cleanup code that must not be interrupted half-way runs inside :func:`deferred`: a signal
that arrives there is raised when the block ends.

The signal reaches the main thread only; work that threads do for it is stopped by the
main thread on its way out: downloads are given a :class:`Stop`, whose :meth:`Stop.stop`
wakes a read blocked on a slow server at once, so that waiting for those threads takes
no longer than their cleanup.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket  # (imported when a Stop is used: repushfast loads this module)

STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """vmbuild was asked to stop by signal ``signo``; the process exits with 128 + signo."""

    def __init__(self, signo: int) -> None:
        super().__init__(signal.Signals(signo).name)
        self.signo = signo


class _State:
    depth = 0  # how many deferred() blocks the main thread is in
    pending: int | None = None  # a signal that arrived inside one
    fired = False  # the first signal has been raised; ignore the rest


def _handler(signo: int, frame: FrameType | None) -> None:
    if _State.fired:
        return
    if _State.depth > 0:
        if _State.pending is None:
            _State.pending = signo
        return
    _State.fired = True
    raise Terminated(signo)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a stopping signal that arrives in it is raised at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        pending = _State.pending
        if _State.depth == 0 and pending is not None and not _State.fired:
            _State.pending = None
            _State.fired = True
            raise Terminated(pending)


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """Install the handlers for the block (the main thread only); restore the old ones."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in STOPPING}
    _State.fired, _State.pending = False, None
    for s in STOPPING:
        if old[s] != signal.SIG_IGN:  # e.g. nohup: a SIGHUP the user asked to ignore
            signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_status(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number (130 for a plain Ctrl-C)."""
    return 128 + getattr(exc, "signo", signal.SIGINT)


def describe(exc: KeyboardInterrupt) -> str:
    signo = getattr(exc, "signo", signal.SIGINT)
    if signo == signal.SIGINT:
        return "interrupted"
    return f"stopped by {signal.Signals(signo).name}; cleaned up"


class Stopped(Exception):
    """A transfer was stopped by its :class:`Stop` (nobody waits for it any more)."""


class Stop:
    """Stops the transfers given it: after :meth:`stop`, each ends soon with
    :class:`Stopped`, and a read blocked on a socket it watches at once (the socket is
    shut down, which only wakes the reader; under TLS too)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()

    def stop(self) -> None:
        import socket

        self.stopped.set()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def check(self) -> None:
        """Raise :class:`Stopped` once stopped."""
        if self.stopped.is_set():
            raise Stopped()

    def watch(self, conn: object) -> socket.socket | None:
        """Wake reads of the connection ``conn`` (its ``sock``, if it has one yet) when
        stopped, until :meth:`unwatch`; :class:`Stopped` if stopped already."""
        import socket

        sock = getattr(conn, "sock", None)
        if not isinstance(sock, socket.socket):
            self.check()
            return None
        with self._lock:
            self._socks.add(sock)
        if self.stopped.is_set():  # (added after stop() shut the others down)
            self.unwatch(sock)
            raise Stopped()
        return sock

    def unwatch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socks.discard(sock)
