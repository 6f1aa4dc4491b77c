"""The guest's serial console, read on a thread from a socketpair that QEMU inherits.

Keeps the last lines for error reports, notes when the guest's init says it started
and when it is ready and which stage of a root step runs (``guest/root-step`` announces
each, so that a timeout can name it), and recognises a kernel panic, an out-of-memory
kill or a corrupt file system.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time

log = logging.getLogger("vmbuild")

INIT_MARK = b"vmbuild-guest-init"
READY_MARK = b"vmbuild-guest-ready"
FAILED_MARK = b"vmbuild-guest-failed:"
STAGE_MARK = re.compile(rb"vmbuild-guest-stage: ([A-Za-z]+)")
KEEP = 256 * 1024
PANIC = re.compile(rb"Kernel panic - not syncing:[^\r\n]*")
# Our markers, the address-only lines of a kernel stack trace, microvm's lack of PCI.
NOISE = re.compile(r"vmbuild-guest-|\s*\? 0x|\s*</?TASK>|PCI: Fatal: No config space")
OOM = re.compile(rb"Out of memory: Killed process \d+ \([^)]*\)|invoked oom-killer")
# the kernel's word that an ext4 file system is corrupt (what EUCLEAN, "Structure needs
# cleaning", comes from)
CORRUPT = re.compile(rb"EXT4-fs error \(device [^)\s]+\)[^\r\n]*")


class Console:
    """Collects one guest's console output; ``sock`` is our end of the socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.closed = threading.Event()
        self.init_at: float | None = None
        self.ready_at: float | None = None
        self.failure: str | None = None
        self.stage: str | None = None  # the root step's stage the guest last announced
        self._thread = threading.Thread(target=self._pump, name="vmbuild-console", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        try:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    self._buf += data
                    if len(self._buf) > KEEP:
                        del self._buf[: len(self._buf) - KEEP]
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line.rstrip(b"\r"))
        finally:
            self.closed.set()
            self.ready.set()  # wake any waiter; it checks why

    def _line(self, line: bytes) -> None:
        log.debug("guest: %s", line.decode(errors="replace"))
        if line.startswith(INIT_MARK) and self.init_at is None:
            self.init_at = time.monotonic()
        elif line.startswith(READY_MARK):
            self.ready_at = time.monotonic()
            self.ready.set()
        elif (stage := STAGE_MARK.fullmatch(line)) is not None:
            self.stage = stage.group(1).decode()
        elif line.startswith(FAILED_MARK):
            self.failure = line[len(FAILED_MARK) :].decode(errors="replace").strip()
            self.ready.set()

    def text(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def tail(self, n: int = 12) -> list[str]:
        """The last ``n`` non-empty lines, without our own markers."""
        lines = [ln.decode(errors="replace").rstrip("\r") for ln in self.text().split(b"\n")]
        lines = [ln for ln in lines if ln.strip() and not NOISE.match(ln)]
        return lines[-n:]

    def hint(self) -> str:
        """An error's hint: the console's last lines."""
        tail = self.tail(8)
        if not tail:
            return "the guest printed nothing; --debug shows QEMU's command line"
        return "guest console, last lines: " + " | ".join(tail)

    def panic(self) -> str | None:
        """The kernel's panic line, if it panicked."""
        found = PANIC.findall(self.text())
        return found[-1].decode(errors="replace").strip() if found else None

    def oom(self) -> str | None:
        found = OOM.findall(self.text())
        return found[-1].decode(errors="replace") if found else None

    def corruption(self) -> str | None:
        """The kernel's last report of a corrupt ext4 file system, if it made one."""
        found = CORRUPT.findall(self.text())
        return found[-1].decode(errors="replace").strip() if found else None

    def close(self, wait: float = 1.0) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(wait)
        self._sock.close()
