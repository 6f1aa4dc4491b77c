"""QMP to a QEMU child over an inherited socketpair (no socket path to race on).

A small synchronous layer over ``qemu.qmp``'s asyncio client, on an event loop of its
own that is closed with the monitor (nothing global, no sockets left behind): connect
with a deadline (the greeting is QEMU's "ready"), find the forwarded SSH port, collect
the host I/O errors QEMU reports on the guest's disks (``BLOCK_IO_ERROR``), quit and
wait for QEMU's SHUTDOWN event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from qemu.qmp import EventListener, QMPClient

from vmbuild.errors import VmError

T = TypeVar("T")
_PORT = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+22\b")


class Monitor:
    """QMP on ``sock`` (our end of the pair); ``alive`` says whether QEMU still runs."""

    def __init__(self, sock: socket.socket, alive: Callable[[], bool]) -> None:
        self._sock = sock
        self._alive = alive
        if not logging.getLogger("vmbuild").isEnabledFor(logging.DEBUG):
            # qemu.qmp logs a dead peer as an error; we report it ourselves, better.
            logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
        self._loop = asyncio.new_event_loop()
        self._client: Any = QMPClient("vmbuild")
        self._io_errors = EventListener(("BLOCK_IO_ERROR",))
        self._client.register_listener(self._io_errors)

    def _run(self, aw: Coroutine[Any, Any, T], timeout: float) -> T:
        job = asyncio.wait_for(aw, timeout)
        try:
            return self._loop.run_until_complete(job)
        except BaseException:
            # A signal (SIGTERM during the boot) can stop the loop before these start:
            # closed, they print no "coroutine ... was never awaited" at exit.
            for coro in (job, aw):
                if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                    coro.close()
            raise

    def connect(self, timeout: float) -> None:
        try:
            self._run(self._client.connect(self._sock), timeout)
        except Exception as exc:  # a timeout, EOF, or a protocol error
            why = "QEMU exited" if not self._alive() else f"no QMP greeting within {timeout:g} s"
            raise VmError(f"QEMU did not start: {why}", "see --debug for its command line") from exc

    def hmp(self, command: str, timeout: float = 5.0) -> str:
        out = self._run(
            self._client.execute("human-monitor-command", {"command-line": command}), timeout
        )
        return str(out)

    def ssh_port(self) -> int:
        text = self.hmp("info usernet")
        found = _PORT.search(text)
        if not found:
            raise VmError(
                "QEMU did not forward the guest's SSH port",
                f"'info usernet' said: {' '.join(text.split())}",
            )
        return int(found.group(1))

    def io_errors(self) -> list[dict[str, Any]]:
        """The data of the BLOCK_IO_ERROR events QEMU sent since the last call.

        Events are read only while the event loop runs, so this lets it run briefly to
        take in whatever QEMU has sent meanwhile. Each item has ``node-name`` (``d0`` for
        the scratch disk, ``d1``, ... for the extra disks), ``operation`` ("read" or
        "write"), ``nospace`` (the host's file system is full) and ``reason``.
        """
        with contextlib.suppress(Exception):  # QEMU gone: what was read is still there
            self._run(asyncio.sleep(0.01), 1.0)
        found: list[dict[str, Any]] = []
        for event in self._io_errors.clear():
            data = event.get("data")
            found.append(dict(data) if isinstance(data, dict) else {})
        return found

    def quit(self, timeout: float = 1.0) -> bool:
        """Ask QEMU to quit and wait for its SHUTDOWN event; False if that did not happen."""

        async def quit_and_wait() -> None:
            listener = EventListener(("SHUTDOWN",))
            with self._client.listen(listener):
                await self._client.execute("quit")
                await listener.get()

        try:
            self._run(quit_and_wait(), timeout)
            return True
        except Exception:  # already gone, or hung: the caller kills it
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._client.disconnect(), 2.0)
        self._loop.close()
        self._sock.close()
