"""QMP over a socketpair, against a fake QEMU monitor on the other end."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from vmbuild.errors import VmError
from vmbuild.vm.qmp import Monitor

USERNET = (
    "Hub -1 (n0):\r\n"
    "  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
    "  TCP[HOST_FORWARD]  13       127.0.0.1 40123       10.0.2.15    22     0     0\r\n"
)


class FakeQemu(threading.Thread):
    """Speaks just enough QMP: greeting, capabilities, HMP 'info usernet', quit."""

    def __init__(self, sock: socket.socket, greet: bool = True, usernet: str = USERNET) -> None:
        super().__init__(daemon=True)
        self.sock, self.greet, self.usernet = sock, greet, usernet
        self.seen: list[str] = []

    def send(self, obj: object) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\r\n")

    def run(self) -> None:
        if not self.greet:
            self.sock.recv(1)
            return
        self.send(
            {
                "QMP": {
                    "version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""},
                    "capabilities": [],
                }
            }
        )
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            data = self.sock.recv(4096)
            if not data:
                return
            buf += data.decode()
            while buf.strip():
                try:
                    msg, used = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break  # wait for the rest
                buf = buf.lstrip()[used:]
                if self.answer(msg):
                    return

    def answer(self, msg: dict[str, str]) -> bool:
        """Reply to one command; True once QEMU would be gone."""
        self.seen.append(msg["execute"])
        reply: object = self.usernet if msg["execute"] == "human-monitor-command" else {}
        self.send({"return": reply, "id": msg.get("id")})
        if msg["execute"] != "quit":
            return False
        data = {"guest": False, "reason": "host-qmp-quit"}
        self.send(
            {"event": "SHUTDOWN", "data": data, "timestamp": {"seconds": 0, "microseconds": 0}}
        )
        self.sock.close()
        return True


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    theirs.close()


def test_connect_find_port_and_quit(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    fake = FakeQemu(theirs)
    fake.start()
    mon = Monitor(ours, alive=lambda: True)
    mon.connect(timeout=5)
    assert mon.ssh_port() == 40123
    assert mon.quit() is True
    mon.close()
    fake.join(5)
    assert fake.seen == ["qmp_capabilities", "human-monitor-command", "quit"]
    assert ours.fileno() == -1


def test_no_greeting_is_a_clear_error(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    FakeQemu(theirs, greet=False).start()
    mon = Monitor(ours, alive=lambda: True)
    with pytest.raises(VmError, match=r"no QMP greeting within 0\.2 s"):
        mon.connect(timeout=0.2)
    mon.close()


def test_dead_qemu_is_named(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.close()
    mon = Monitor(ours, alive=lambda: False)
    with pytest.raises(VmError, match="QEMU exited"):
        mon.connect(timeout=2)
    mon.close()


def test_missing_forward_is_reported(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    FakeQemu(theirs, usernet="Hub -1 (n0):\r\n").start()
    mon = Monitor(ours, alive=lambda: True)
    mon.connect(timeout=5)
    with pytest.raises(VmError, match="did not forward"):
        mon.ssh_port()
    mon.close()
