"""The build VM for real: QEMU guests (TCG where KVM is unusable), never skipped for KVM.

Boots are the cost (about 2 s each under TCG), so the checks that leave the guest
healthy share one machine, and only the faults, which end their VM, boot their own.
Every test that boots points the temporary directory at its own ``tmp_path`` so that
"nothing left behind" can be checked exactly: no vmbuild-* entry, no QEMU whose command
line mentions that directory, no socket left open in this process.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli
from tests.support.qemuprocs import qemu_mentioning
from vmbuild.errors import VmError
from vmbuild.vm import Disk, Machine, bootkernel
from vmbuild.vm.faults import GuestDiskFull, GuestOutOfMemory

pytestmark = pytest.mark.vm


def open_sockets() -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tempfile's directory for this test only; checks that nothing was left in it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))
    sockets = open_sockets()
    yield tmp
    assert_clean(tmp)
    assert open_sockets() <= sockets


def assert_clean(tmp: Path) -> None:
    deadline = time.monotonic() + 5
    while qemu_mentioning(str(tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_mentioning(str(tmp)) == []
    assert [p.name for p in tmp.iterdir() if p.name.startswith("vmbuild-")] == []


def run(vm: Machine, *argv: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = vm.run(list(argv), stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
    return status, out.getvalue(), err.getvalue()


# --- one healthy machine for everything that leaves it healthy ------------------------


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("disks")
    ro, rw = d / "ro.img", d / "rw.img"
    ro.write_bytes(b"read-only disk\n".ljust(1024 * 1024, b"\0"))
    rw.write_bytes(b"\0" * 1024 * 1024)
    return ro, rw


@pytest.fixture(scope="module")
def vm(disks: tuple[Path, Path]) -> Iterator[Machine]:
    ro, rw = disks
    with Machine(memory_mib=256, disk_size_mib=64, disks=[Disk(ro, readonly=True), Disk(rw)]) as m:
        yield m


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_status_passes_through(vm: Machine, code: int) -> None:
    assert run(vm, "sh", "-c", f"exit {code}")[0] == code


def test_stdout_and_stderr_stay_apart(vm: Machine) -> None:
    status, out, err = run(vm, "sh", "-c", "echo to-out; echo to-err >&2; echo more-out")
    assert (status, out, err) == (0, b"to-out\nmore-out\n", b"to-err\n")


def test_arguments_arrive_verbatim(vm: Machine) -> None:
    argv = ["printf", "[%s]", "a b", "it's", "$HOME", "*", ""]
    assert run(vm, *argv)[1] == b"[a b][it's][$HOME][*][]"


def test_stdin_data(vm: Machine) -> None:
    assert run(vm, "cat", stdin_data=b"fed in")[1] == b"fed in"
    script = b'#!/bin/sh\necho from-script "$@"\n'
    assert run(vm, "sh", "-c", "cat > /tmp/s.sh && chmod 755 /tmp/s.sh", stdin_data=script)[0] == 0
    assert run(vm, "/tmp/s.sh", "x")[1] == b"from-script x\n"


def test_readonly_disk_is_readable_not_writable(vm: Machine) -> None:
    status, out, _ = run(vm, "head", "-c", "15", "/dev/vdb")
    assert (status, out) == (0, b"read-only disk\n")
    status, _, err = run(vm, "sh", "-c", "echo x | dd of=/dev/vdb conv=notrunc")
    assert status != 0 and err
    assert run(vm, "cat", "/sys/block/vdb/ro")[1] == b"1\n"


def test_readwrite_disk_is_writable(vm: Machine, disks: tuple[Path, Path]) -> None:
    assert run(vm, "sh", "-c", "echo written | dd of=/dev/vdc conv=notrunc,fsync")[0] == 0
    assert disks[1].read_bytes().startswith(b"written\n")


def test_scratch_disk_is_ext4_at_scratch_and_tools_are_on_path(vm: Machine) -> None:
    script = (
        "grep ' /scratch ext4 ' /proc/mounts >/dev/null && pwd && id -u && echo $PATH"
        " && tar --version | head -n 1 && for t in useradd groupadd usermod userdel groupmod"
        " chpasswd passwd unshare chroot mount busybox; do command -v $t; done"
    )
    status, out, err = run(vm, "sh", "-c", script)
    assert status == 0, err
    lines = out.decode().splitlines()
    assert lines[:4] == ["/scratch", "0", "/usr/bin:/usr/sbin:/bin:/sbin", "tar (GNU tar) 1.34"]
    assert len(lines) == 15


def test_users_and_passwords(vm: Machine) -> None:
    script = (
        "useradd -m -u 1234 alice && echo alice:pw | chpasswd && id alice"
        " && grep -c '^alice:[$]' /etc/shadow"
    )
    status, out, err = run(vm, "sh", "-c", script)
    assert status == 0, err
    assert b"uid=1234(alice)" in out and out.endswith(b"1\n")


def test_capabilities_survive_ext4_overlay_tmpfs_and_tar(vm: Machine) -> None:
    script = """
set -e
cd /scratch && mkdir -p caps && cd caps && mkdir low up work merged
echo hi > low/f && setcap cap_net_raw+ep low/f
mount -t overlay overlay -o lowerdir=low,upperdir=up,workdir=work merged
touch merged/new && setcap cap_chown+ep merged/new
T="tar --xattrs --xattrs-include=*"
mkdir /tmp/t && $T -C merged -cf - . | $T -C /tmp/t -xf -
getcap low/f merged/f up/new /tmp/t/f /tmp/t/new
umount merged
"""
    status, out, err = run(vm, "sh", "-c", script)
    assert status == 0, err
    assert out.decode().split("\n")[:5] == [
        "low/f cap_net_raw=ep",
        "merged/f cap_net_raw=ep",
        "up/new cap_chown=ep",
        "/tmp/t/f cap_net_raw=ep",
        "/tmp/t/new cap_chown=ep",
    ]


def test_namespaces_and_chroot(vm: Machine) -> None:
    script = (
        "mkdir -p /scratch/root/bin && cp /usr/bin/busybox /scratch/root/bin/ &&"
        " unshare -m -p -i -u -f chroot /scratch/root /bin/busybox sh -c 'echo $$; hostname x'"
    )
    status, out, err = run(vm, "sh", "-c", script)
    assert (status, out) == (0, b"1\n"), err


def test_command_timeout_stops_the_machine_quickly(private_tmp: Path) -> None:
    with Machine(memory_mib=128, disk_size_mib=16) as m:
        assert run(m, "true")[0] == 0
        started = time.monotonic()
        with pytest.raises(VmError, match=r"did not finish within the 1 s timeout"):
            m.run(["sleep", "60"], timeout=1)
        assert time.monotonic() - started < 5


# --- the command line: one boot for status, streams and the cleanup -----------------


def test_cli_passes_status_and_streams(private_tmp: Path) -> None:
    proc = vmbuild_cli(
        "vm",
        "run",
        "--memory",
        "128",
        "--disk-size",
        "16",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
        env={"TMPDIR": str(private_tmp)},
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (42, "out\n", "err\n")


def test_cli_ctrl_c_kills_the_vm(private_tmp: Path) -> None:
    env = dict(os.environ, TMPDIR=str(private_tmp))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmbuild",
            "--debug",
            "vm",
            "run",
            "--memory",
            "128",
            "--disk-size",
            "16",
            "--",
            "sh",
            "-c",
            "echo started >&2; sleep 60",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(b"started"):
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        if proc.stdout:
            proc.stdout.close()


def test_a_killed_controller_leaves_nothing_for_long(private_tmp: Path) -> None:
    """SIGKILL leaves no chance to clean up: the guest stops itself, the next VM sweeps."""
    env = dict(os.environ, TMPDIR=str(private_tmp))
    argv = [sys.executable, "-m", "vmbuild", "vm", "run", "--memory", "128", "--"]
    proc = subprocess.Popen(
        [*argv, "sh", "-c", "echo started; sleep 60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 20
    while qemu_mentioning(str(private_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert qemu_mentioning(str(private_tmp)) == []
    with Machine(memory_mib=128, disk_size_mib=16) as m:
        assert run(m, "true")[0] == 0


# --- faults: each ends its VM, so each boots its own ---------------------------------


def test_out_of_memory_names_the_memory_size(private_tmp: Path) -> None:
    with (
        Machine(memory_mib=128, disk_size_mib=16) as m,
        pytest.raises(GuestOutOfMemory, match=r"ran out of memory \(128 MiB\)"),
    ):
        run(m, "dd", "if=/dev/zero", "of=/dev/null", "bs=300M", "count=1")


def test_full_scratch_disk_names_the_disk_size(private_tmp: Path) -> None:
    with (
        Machine(memory_mib=128, disk_size_mib=16) as m,
        pytest.raises(GuestDiskFull, match=r"scratch disk is full \(16 MiB\)"),
    ):
        run(m, "dd", "if=/dev/zero", "of=/scratch/big", "bs=1M", "count=64")


def test_kernel_panic_is_reported_with_the_console(private_tmp: Path) -> None:
    with Machine(memory_mib=128, disk_size_mib=16) as m, pytest.raises(VmError) as info:
        run(m, "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert "panicked" in info.value.message and "sysrq triggered crash" in info.value.message
    assert info.value.hint and "guest console, last lines:" in info.value.hint


def test_machine_timeout_covers_boot(private_tmp: Path) -> None:
    started = time.monotonic()
    with (
        pytest.raises(VmError, match=r"timeout; the VM was stopped"),
        Machine(memory_mib=128, disk_size_mib=16, timeout=0.05) as m,
    ):
        run(m, "true")
    assert time.monotonic() - started < 10


# --- the fallback kernel ---------------------------------------------------------------


def test_debian_cloud_kernel_fallback_boots_and_mounts_overlays(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_GUEST_KERNEL", "cloud")
    script = (
        "uname -r; cd /scratch && mkdir l u w m && echo ok > l/f"
        " && mount -t overlay o -o lowerdir=l,upperdir=u,workdir=w m && cat m/f"
    )
    with Machine(memory_mib=256, disk_size_mib=16) as m:
        status, out, err = run(m, "sh", "-c", script)
    assert status == 0, err
    release, ok = out.decode().split()
    assert release.endswith("-cloud-amd64") and ok == "ok"


def test_a_users_kernel_boots(private_tmp: Path) -> None:
    """--kernel PATH: here the bzImage of vmbuild's own build, booted the classic way."""
    built = bootkernel.resolve(None)  # found in the cache (or built once)
    assert built.origin == "built"
    with Machine(memory_mib=128, disk_size_mib=16, kernel=built.path.parent / "bzImage") as m:
        assert run(m, "cat", "/proc/cmdline")[1].startswith(b"console=ttyS0")
