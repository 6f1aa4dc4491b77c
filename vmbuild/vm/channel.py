"""The control channel to a guest: SSH (paramiko) to the guest's dropbear.

One transport per machine, one session per command. Output is streamed as it arrives;
only small things (scripts, status notes) travel here, bulk data goes over disks.
"""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable
from typing import BinaryIO

import paramiko

from vmbuild.errors import VmError
from vmbuild.vm.keys import Keys

POLL = 0.05


class Channel:
    """An authenticated SSH transport to root@guest via the forwarded ``port``."""

    def __init__(self, port: int, keys: Keys, timeout: float) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=timeout)
            if not keys.matches_host(transport.get_remote_server_key()):
                raise VmError(
                    "the guest presented an unexpected SSH host key",
                    "remove the cached keys: rm -r ~/.cache/vmbuild/ssh-keys",
                )
            transport.auth_publickey("root", keys.client_key())
        except BaseException:
            transport.close()
            sock.close()
            raise
        self._sock = sock
        self.transport = transport

    def execute(
        self,
        command: str,
        *,
        stdout: BinaryIO | None,
        stderr: BinaryIO | None,
        stdin_data: bytes | None = None,
        deadline: float | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> int | None:
        """Run ``command`` (a shell string); its exit status, or None on deadline or loss.

        A command killed by a signal reports 128 + the signal number, like a shell.
        """
        chan = self.transport.open_session()
        try:
            chan.exec_command(command)
            if stdin_data:
                chan.sendall(stdin_data)
            chan.shutdown_write()
            while True:
                drained = self._drain(chan, stdout, stderr)
                if chan.exit_status_ready() and not drained and chan.eof_received:
                    break
                if chan.closed and not drained:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    return None
                if not alive() or not self.transport.is_active():
                    return None
                if not drained:
                    select.select([chan], [], [], POLL)
            if not chan.exit_status_ready():
                return None
            status = chan.recv_exit_status()
            return status if status >= 0 else None
        finally:
            chan.close()

    @staticmethod
    def _drain(
        chan: paramiko.Channel,
        stdout: BinaryIO | None,
        stderr: BinaryIO | None,
    ) -> bool:
        moved = False
        while chan.recv_ready():
            data = chan.recv(65536)
            if not data:
                break
            moved = True
            if stdout is not None:
                stdout.write(data)
                stdout.flush()
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(65536)
            if not data:
                break
            moved = True
            if stderr is not None:
                stderr.write(data)
                stderr.flush()
        return moved

    def capture(
        self, command: str, deadline: float | None = None, alive: Callable[[], bool] = lambda: True
    ) -> tuple[int | None, bytes]:
        """Run ``command`` and return its status and stdout (for our own small queries)."""
        out = io.BytesIO()
        status = self.execute(command, stdout=out, stderr=None, deadline=deadline, alive=alive)
        return status, out.getvalue()

    def close(self) -> None:
        self.transport.close()
        self._sock.close()
