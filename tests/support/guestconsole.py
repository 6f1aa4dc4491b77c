"""A :class:`vmbuild.vm.console.Console` that has read given lines, as a guest's serial
console would have sent them (for tests of what the host makes of them)."""

from __future__ import annotations

import socket

from vmbuild.vm.console import Console


def console_of(*lines: bytes) -> Console:
    """A closed Console that read ``lines`` (each ended by CRLF); what it read stays."""
    ours, theirs = socket.socketpair()
    console = Console(ours)
    theirs.sendall(b"".join(line + b"\r\n" for line in lines))
    theirs.close()
    assert console.closed.wait(5)
    console.close()
    return console
