"""SIGTERM/SIGHUP as Ctrl-C, deferred cleanup, the ENOSPC boundary, the timeout setting."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from vmbuild import __main__ as cli
from vmbuild import signals, timeouts
from vmbuild.errors import SpecError


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stopping_signal_raises_a_keyboard_interrupt(signo: signal.Signals) -> None:
    before = signal.getsignal(signo)
    with pytest.raises(KeyboardInterrupt) as info, signals.handlers():
        os.kill(os.getpid(), signo)
        for _ in range(1000):
            pass
    assert isinstance(info.value, signals.Terminated)
    assert signals.exit_status(info.value) == 128 + signo
    assert signal.getsignal(signo) == before  # restored


def test_only_the_first_signal_interrupts() -> None:
    cleaned = False
    with pytest.raises(signals.Terminated), signals.handlers():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one during the cleanup
            for _ in range(1000):
                pass
            cleaned = True
    assert cleaned


def test_a_signal_in_a_deferred_block_is_raised_at_its_end() -> None:
    steps = []
    with pytest.raises(signals.Terminated) as info, signals.handlers():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(1000):
                pass
            steps.append("whole")
        steps.append("after")
    assert steps == ["whole"]
    assert info.value.signo == signal.SIGHUP


def test_messages() -> None:
    assert signals.describe(KeyboardInterrupt()) == "interrupted"
    assert signals.exit_status(KeyboardInterrupt()) == 130
    assert signals.describe(signals.Terminated(signal.SIGTERM)) == (
        "stopped by SIGTERM; cleaned up"
    )


def test_a_full_disk_on_the_host_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import vmbuild.cli.build

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "layer-0"))

    monkeypatch.setattr(vmbuild.cli.build, "build", full)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\n')
    assert cli.main(["build", str(spec), "--out", str(tmp_path / "o.tar")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"vmbuild: error: No space left on device writing {tmp_path}/layer-0")
    assert "TMPDIR" in line


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20", 20.0), (" 1.5 ", 1.5), ("600", 600.0), ("1e3", 1000.0), ("0", None), ("0.0", None)],
)
def test_timeouts_parse(text: str, seconds: float | None) -> None:
    assert timeouts.parse(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["", "-1", "-0.5", "abc", "nan", "inf", "-inf", "1s"])
def test_bad_timeouts_are_spec_errors(text: str) -> None:
    with pytest.raises(SpecError, match="is not a positive number of seconds, or 0 for no limit"):
        timeouts.parse(text, "--timeout")


def test_the_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(timeouts.ENV, "30")
    assert timeouts.step_timeout() == 30
    with timeouts.limit(5):
        assert timeouts.step_timeout() == 5
    with timeouts.limit(None):  # --timeout 0: no limit, whatever the environment says
        assert timeouts.step_timeout() is None
    assert timeouts.step_timeout() == 30
    monkeypatch.setenv(timeouts.ENV, "soon")
    with pytest.raises(SpecError, match="VMBUILD_TIMEOUT 'soon'"):
        timeouts.step_timeout()


def test_a_build_vm_is_bounded_by_an_hour_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --timeout or VMBUILD_TIMEOUT a hanging postinst kept a build (and its CI
    job) waiting forever; 0 is the way to ask for no limit."""
    monkeypatch.delenv(timeouts.ENV, raising=False)
    assert timeouts.DEFAULT == 3600
    assert timeouts.step_timeout() == timeouts.DEFAULT
    assert timeouts.from_env() == timeouts.DEFAULT
    monkeypatch.setenv(timeouts.ENV, " ")
    assert timeouts.step_timeout() == timeouts.DEFAULT
    monkeypatch.setenv(timeouts.ENV, "0")
    assert timeouts.step_timeout() is None


@pytest.mark.parametrize("how", ["spawn", "run"])
def test_a_child_dies_with_a_killed_parent(how: str) -> None:
    """PR_SET_PDEATHSIG: what QEMU (and the KVM probe) get, for a SIGKILL of vmbuild."""
    import subprocess
    import sys
    import time

    from tests.support.cli import REPO

    start = {
        "spawn": "ctx = spawn(['sleep', '60'], die_with_parent=True); p = ctx.__enter__()\n"
        "print(p.pid, flush=True)\n",
        "run": "import threading\n"
        "t = threading.Thread(target=run, args=(['sh', '-c', 'echo $$; exec sleep 60'],),"
        " kwargs={'die_with_parent': True})\nt.start()\n",
    }[how]
    script = f"import time\nfrom vmbuild.run import run, spawn\n{start}time.sleep(60)\n"
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)
        parent.kill()
        parent.wait()
        end = time.monotonic() + 3
        while running(child) and time.monotonic() < end:
            time.sleep(0.02)
        assert not running(child)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout:
            parent.stdout.close()


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (nobody may reap an orphan here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
