"""Build VMs under faults: a full host disk, a deadline, SIGTERM/SIGHUP and SIGKILL.

Each test runs ``vmbuild build`` as a child with TMPDIR pointed at a directory of its
own, so "nothing left behind" is exact: no ``vmbuild-*`` entry there, no QEMU whose
command line mentions it, no ``.part`` beside the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli
from tests.support.images import image_from_layers, layer_tar
from tests.support.qemuprocs import qemu_mentioning

SLEEPER = """
name = "sleeper"
tag = "t"
runAsRoot = '''
echo step-started
sleep {seconds}
'''
"""


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def leftovers(tmp: Path, out_dir: Path) -> list[str]:
    """What a build left: (.)vmbuild-* in ``tmp``, .part in ``out_dir``, QEMU naming ``tmp``."""
    deadline = time.monotonic() + 5
    while qemu_mentioning(str(tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [f"qemu pid {pid}" for pid in qemu_mentioning(str(tmp))]
    left += [p.name for p in tmp.iterdir() if p.name.startswith(("vmbuild-", ".vmbuild-"))]
    left += [p.name for p in out_dir.iterdir() if p.name.endswith(".part")]
    return left


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("vmbuild:")]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    d = tmp_path / "tmp"
    d.mkdir()
    return d


class Child:
    """``vmbuild ARGS`` running in the background, its stderr read line by line."""

    def __init__(self, tmp: Path, *args: str | os.PathLike[str], **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmbuild", *map(str, args)],
            cwd=REPO,
            env=dict(os.environ, TMPDIR=str(tmp), **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[bytes] = []

    def wait_for_line(self, mark: bytes, within: float = 120) -> None:
        assert self.proc.stderr is not None
        end = time.monotonic() + within
        for line in self.proc.stderr:
            self.lines.append(line)
            if mark in line:
                return
            assert time.monotonic() < end, f"no {mark!r} within {within} s"
        raise AssertionError(f"vmbuild ended before {mark!r}: {b''.join(self.lines)!r}")

    def finish(self, within: float = 30) -> tuple[int, str]:
        assert self.proc.stderr is not None
        status = self.proc.wait(within)
        rest = self.proc.stderr.read()
        return status, (b"".join(self.lines) + rest).decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.close()


# --- a full host disk ------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.mark.vm
def test_a_full_tmpdir_is_one_line_naming_it_not_a_hang(tmp_path: Path, small_tmpfs: Path) -> None:
    text = (
        'name = "big"\ntag = "t"\ndiskSize = 2048\n'
        "runAsRoot = 'dd if=/dev/zero of=/big bs=1M count=100'\n"
    )
    started = time.monotonic()
    proc = vmbuild_cli(
        "build",
        spec(tmp_path, text),
        "--out",
        tmp_path / "out.tar.gz",
        env={"TMPDIR": str(small_tmpfs)},
    )
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert f"no space left in {small_tmpfs} (TMPDIR)" in line, line
    assert took < 90
    assert leftovers(small_tmpfs, tmp_path) == []
    assert not (tmp_path / "out.tar.gz").exists()


# --- a deadline for every build VM ----------------------------------------------------


@pytest.mark.vm
@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_step_past_its_timeout_names_the_step_and_is_torn_down(
    tmp_path: Path, tmp: Path, how: str
) -> None:
    args: list[str | Path] = ["build", spec(tmp_path, SLEEPER.format(seconds=600))]
    args += ["--out", tmp_path / "out.tar.gz"]
    env = {"TMPDIR": str(tmp)}
    if how == "option":
        args += ["--timeout", "20"]
    else:
        env["VMBUILD_TIMEOUT"] = "20"
    started = time.monotonic()
    proc = vmbuild_cli(*args, env=env)
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "runAsRoot did not finish within the 20 s timeout: stopped after 2" in line, line
    assert "--timeout" in line
    assert 20 <= took < 45
    assert leftovers(tmp, tmp_path) == []


@pytest.mark.vm
def test_a_timeout_names_the_stage_the_guest_was_in(tmp_path: Path, tmp: Path) -> None:
    """The guest announces each stage on its console: a hanging extraCommands (or a
    configure = true postinst) is named as such, not as runAsRoot."""
    text = 'name = "s"\ntag = "t"\nrunAsRoot = "true"\nextraCommands = "sleep 600"\n'
    proc = vmbuild_cli(
        "build", spec(tmp_path, text), "--out", tmp_path / "o.tar", "--compress", "none",
        "--timeout", "30",
        env={"TMPDIR": str(tmp)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "extraCommands did not finish within the 30 s timeout" in line, line
    assert leftovers(tmp, tmp_path) == []


@pytest.mark.parametrize(
    ("option", "env"),
    [("-5", None), ("-0.5", None), ("soon", None), ("nan", None), ("inf", None), (None, "ten")],
)
def test_a_bad_timeout_is_one_line_and_status_2(
    tmp_path: Path, option: str | None, env: str | None
) -> None:
    args: list[str | Path] = ["build", spec(tmp_path, SLEEPER.format(seconds=1))]
    args += ["--out", tmp_path / "out.tar.gz"]
    if option is not None:
        args.append(f"--timeout={option}")
    proc = vmbuild_cli(*args, env={"VMBUILD_TIMEOUT": env or ""})
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    where = "--timeout" if option is not None else "VMBUILD_TIMEOUT"
    assert line.startswith(f"vmbuild: error: {where} ") and "positive number of seconds" in line


# --- SIGTERM, SIGHUP and SIGKILL --------------------------------------------------------


def export_spec(tmp_path: Path) -> Path:
    layer = layer_tar(tmp_path / "l.tar", [("etc", "d", ""), ("etc/hello", "f", b"hi\n")])
    image = image_from_layers(tmp_path / "base.tar", [layer])
    return spec(tmp_path, f'function = "exportImage"\nfromImage = "{image}"\nmergeInVM = true\n')


def wait_for_qemu(tmp: Path, child: Child, within: float = 60) -> None:
    end = time.monotonic() + within
    while not qemu_mentioning(str(tmp)):
        assert child.proc.poll() is None, child.finish()
        assert time.monotonic() < end, "QEMU did not start"
        time.sleep(0.02)


@pytest.mark.vm
def test_sigterm_during_the_boot_cleans_up(
    tmp_path: Path, tmp: Path, children: list[Child]
) -> None:
    """exportImage with mergeInVM: its .part output is open while the VM boots."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = Child(tmp, "build", export_spec(tmp_path), "--out", out_dir / "rootfs.tar")
    children.append(child)
    wait_for_qemu(tmp, child)
    assert [p.name for p in out_dir.iterdir() if p.name.endswith(".part")]  # the test bites
    child.proc.send_signal(signal.SIGTERM)
    status, stderr = child.finish()
    assert status == 128 + signal.SIGTERM, stderr
    assert error_lines(stderr) == ["vmbuild: stopped by SIGTERM; cleaned up"]
    assert leftovers(tmp, out_dir) == []
    assert list(out_dir.iterdir()) == []


@pytest.mark.vm
@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_step_cleans_up(
    tmp_path: Path, tmp: Path, children: list[Child], signo: signal.Signals
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    text = SLEEPER.format(seconds=60)
    child = Child(tmp, "build", spec(tmp_path, text), "--out", out_dir / "out.tar.gz")
    children.append(child)
    child.wait_for_line(b"step-started")
    child.proc.send_signal(signo)
    status, stderr = child.finish()
    assert status == 128 + signo, stderr
    assert error_lines(stderr) == [f"vmbuild: stopped by {signo.name}; cleaned up"]
    assert leftovers(tmp, out_dir) == []
    assert list(out_dir.iterdir()) == []


@pytest.mark.vm
def test_sigkill_takes_qemu_along_and_the_next_build_sweeps(
    tmp_path: Path, tmp: Path, children: list[Child]
) -> None:
    child = Child(
        tmp, "build", spec(tmp_path, SLEEPER.format(seconds=60)), "--out", tmp_path / "x.tar"
    )
    children.append(child)
    child.wait_for_line(b"step-started")
    assert qemu_mentioning(str(tmp))
    child.proc.kill()
    child.proc.wait()
    end = time.monotonic() + 3
    while qemu_mentioning(str(tmp)) and time.monotonic() < end:
        time.sleep(0.05)
    assert qemu_mentioning(str(tmp)) == []  # PR_SET_PDEATHSIG, not the guest's 5 s watch
    stale = sorted(p.name for p in tmp.iterdir() if p.name.startswith("vmbuild-"))
    assert len(stale) == 2 and any(n.startswith("vmbuild-vm-") for n in stale)
    # A build that starts no VM is enough to sweep them.
    plain = spec(tmp_path, 'name = "plain"\ntag = "t"\n')
    proc = vmbuild_cli("build", plain, "--out", tmp_path / "plain.tar", env={"TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp.iterdir() if "vmbuild-" in p.name] == []  # and lock files
