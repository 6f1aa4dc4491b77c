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
from collections.abc import Callable, Iterator
from types import FrameType

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
    :class:`Stopped`, and what was handed to :meth:`on_stop` is called (the HTTP stack
    the transfers share is interrupted: a blocked read is woken at once)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def check(self) -> None:
        """Raise :class:`Stopped` once stopped."""
        if self.stopped.is_set():
            raise Stopped()

    def on_stop(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when stopped (at once if stopped already)."""
        with self._lock:
            self._wakers.append(wake)
        if self.stopped.is_set():
            wake()
