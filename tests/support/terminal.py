"""Driving a program through a pseudo-terminal, as a user at a terminal would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Sequence


def run_in_pty(
    argv: Sequence[str], send: bytes = b"", after: bytes = b"", timeout: float = 300
) -> tuple[int, bytes]:
    """Run ``argv`` on a new pseudo-terminal; once its output holds ``after``, type
    ``send`` (if any). Returns its exit status and everything it wrote (with the echo)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the last writer closed its end
                    break
                if not chunk:
                    break
                out += chunk
                if send and not sent and after in out:
                    os.write(master, send)
                    sent = True
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"{argv[0]} still running after {timeout} s: {out[-500:]!r}")
        return proc.wait(timeout=60), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
