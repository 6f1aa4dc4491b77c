"""`vmbuild build --shell-on-failure`: a failing runAsRoot leaves the user in a shell in
the failed tree, driven here through a pseudo-terminal; leaving it tears all down."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO, write_spec
from tests.support.qemuprocs import qemu_mentioning

pytestmark = pytest.mark.vm


def _read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} in {bytes(seen)[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"ended before {wanted!r}: {bytes(seen)[-2000:]!r}"
            seen.extend(chunk)


def test_shell_in_the_failed_tree(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        'name = "f"\nrunAsRoot = "echo made-by-the-script > /marker\\nexit 3"\n',
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmbuild",
            "build",
            str(spec),
            "-o",
            str(tmp_path / "f.tar"),
            "--shell-on-failure",
        ],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp), "TERM": "dumb"},
        start_new_session=True,
    )
    os.close(follower)
    seen = bytearray()
    try:
        _read_until(leader, b"leave with `exit`", seen)
        _read_until(leader, b"failed runAsRoot]", seen)  # the prompt
        os.write(leader, b"cat /marker; echo in-$(ls -d /.vmbuild)\r")
        _read_until(leader, b"in-/.vmbuild", seen)
        os.write(leader, b"exit\r")
        _read_until(leader, b"left the failure shell", seen)
        status = proc.wait(120)
        try:
            while chunk := os.read(leader, 65536):
                seen.extend(chunk)
        except OSError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert "made-by-the-script" in text
    assert status == 4, text[-2000:]
    assert "runAsRoot failed with status 3" in text
    assert not (tmp_path / "f.tar").exists()
    assert qemu_mentioning(str(tmp)) == []  # the VM is gone
    assert list(tmp.iterdir()) == []  # and its disks and sockets


def test_shell_on_failure_needs_a_terminal(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 'name = "f"\nrunAsRoot = "exit 3"\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmbuild",
            "build",
            str(spec),
            "-o",
            str(tmp_path / "f.tar"),
            "--keep-vm-on-failure",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr
