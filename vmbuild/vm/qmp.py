"""QMP to a QEMU child over an inherited socketpair (no socket path to race on).

A thin layer over ``qemu.qmp``'s synchronous client: connect with a deadline that
gives up as soon as QEMU dies, find the forwarded SSH port, and ask QEMU to quit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from vmbuild.errors import VmError

_PORT = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+22\b")


class Monitor:
    def __init__(self, sock: socket.socket, alive: Callable[[], bool]) -> None:
        self._sock = sock
        self._alive = alive
        self._qmp: Any = None

    def connect(self, timeout: float) -> None:
        qmp = QEMUMonitorProtocol(self._sock)
        self._qmp = qmp
        loop = qmp._aloop  # the shim's own event loop
        try:
            loop.run_until_complete(asyncio.wait_for(qmp._qmp.connect(self._sock), timeout))
        except Exception as exc:  # a timeout, EOF, or a protocol error
            why = "QEMU exited" if not self._alive() else f"no QMP greeting within {timeout:.0f} s"
            raise VmError(f"QEMU did not start: {why}", "see --debug for its command line") from exc
        qmp.settimeout(5.0)

    def hmp(self, command: str) -> str:
        out = self._qmp.cmd("human-monitor-command", **{"command-line": command})
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

    def quit(self) -> None:
        """Ask QEMU to quit; errors are ignored (the caller kills QEMU if it lingers)."""
        if self._qmp is None:
            return
        with contextlib.suppress(Exception):
            self._qmp.settimeout(1.0)
            self._qmp.cmd("quit")

    def close(self) -> None:
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self._qmp.close()
            self._qmp = None
        self._sock.close()
