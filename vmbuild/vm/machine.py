"""A throwaway build VM: boot on enter, run commands as root, always tear down on exit.

Usage::

    with Machine(memory_mib=512, disk_size_mib=1024, disks=[Disk(tar, readonly=True)]) as vm:
        status = vm.run(["tar", "-xf", "/dev/vdb", "-C", "/scratch"])

The scratch disk is a sparse ext4 image of ``disk_size_mib`` MiB made on the host
(``/dev/vda``, mounted at ``/scratch``); the extra disks follow as ``/dev/vdb``, ...
Whatever happens (an error, a timeout, Ctrl-C, SIGTERM), ``__exit__`` leaves no QEMU
process, socket or temporary file behind; QEMU dies with its controller even on SIGKILL
(the next VM sweeps the files). A host I/O error on a disk image (a full TMPDIR) stops
the VM with a :class:`~vmbuild.vm.faults.HostDiskError` within a second, a time limit
with a :class:`~vmbuild.vm.faults.VmTimeout`.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple

from vmbuild import signals
from vmbuild.errors import VmbuildError, VmError
from vmbuild.run import spawn, terminate, which
from vmbuild.tempdirs import OwnedDir
from vmbuild.vm import accel as accel_mod
from vmbuild.vm import booted, bootkernel, faults, initramfs
from vmbuild.vm.console import Console
from vmbuild.vm.faults import HostWatch, VmTimeout
from vmbuild.vm.qemu import MAX_DISKS, Disk, VmSpec, argv
from vmbuild.vm.workdir import TMP_PREFIX, make_scratch, sweep_stale

if TYPE_CHECKING:  # paramiko and asyncio load when a VM boots, not on import
    import paramiko

    from vmbuild.vm.channel import Channel
    from vmbuild.vm.keys import Keys
    from vmbuild.vm.qmp import Monitor

__all__ = ["Disk", "Machine"]

log = logging.getLogger("vmbuild")

BOOT_TIMEOUT = 60.0
EXEC = ". /usr/lib/vmbuild/exec.sh; vmbuild_exec "  # see guest/exec.sh


class Prepared(NamedTuple):
    """What :meth:`Machine._prepare` readies for QEMU."""

    qemu: str
    kernel: Path
    initrd: Path
    machine: str  # a key of vmbuild.vm.qemu.MACHINES
    scratch: Path


class Machine:
    """A booted guest (see the module docstring). Not thread-safe; one command at a time.

    ``memory_mib``: guest RAM. ``disk_size_mib``: the scratch disk (/dev/vda, ext4 at
    /scratch). ``disks``: extra virtio-blk disks, /dev/vdb, /dev/vdc, ... in order.
    ``accel``: "auto" (KVM only where a probe boots a kernel, else TCG), "kvm" or "tcg".
    ``kernel``: boot this kernel instead of vmbuild's own (built once, cached).
    ``timeout``: seconds for the whole life of the VM from the start of QEMU (boot and
    every command); ``run`` can set a tighter one per command. ``cpus``: vCPUs (1).

    The guest has busybox (every applet), dash as /bin/sh, GNU tar (xattrs), shadow's
    useradd/groupadd/usermod/userdel/groupmod/groupdel/chpasswd/chgpasswd/newusers/passwd,
    setcap/getcap, and a kernel with overlayfs, namespaces and security xattrs on ext4,
    overlayfs and tmpfs. PATH is /usr/bin:/usr/sbin:/bin:/sbin (/bin and /sbin link to
    /usr). After ``__enter__``, ``accel`` says which accelerator was used and why, and
    ``timings`` holds seconds per phase: prepare, qemu_start, kernel_boot, guest_ready,
    command (the last ``run``), teardown (after ``__exit__``).
    """

    def __init__(
        self,
        *,
        memory_mib: int = 512,
        disk_size_mib: int = 1024,
        disks: Sequence[Disk] = (),
        accel: str = "auto",
        kernel: Path | None = None,
        timeout: float | None = None,
        cpus: int | None = None,
    ) -> None:
        if memory_mib < 64:
            raise VmbuildError(f"--memory {memory_mib} MiB is too small", "give at least 64")
        if disk_size_mib < 8:
            raise VmbuildError(f"--disk-size {disk_size_mib} MiB is too small", "give at least 8")
        if len(disks) > MAX_DISKS - 1:
            raise VmbuildError(
                f"{len(disks)} extra disks: a build VM takes at most {MAX_DISKS - 1}",
                "give fewer disks",
            )
        for d in disks:
            if not d.path.is_file():
                raise VmbuildError(f"disk {d.path} does not exist", "give an existing file")
        self.memory_mib = memory_mib
        self.disk_size_mib = disk_size_mib
        self.disks = tuple(disks)
        self.accel_requested = accel
        self.kernel_path = kernel
        self.timeout = timeout
        # One vCPU boots fastest under TCG (no second CPU to bring up); steps are serial.
        self.cpus = cpus or 1
        self.timings: dict[str, float] = {}
        self.accel: accel_mod.Accel | None = None
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: Console | None = None
        self._monitor: Monitor | None = None
        self._channel: Channel | None = None
        self._deadline: float | None = None
        self._started: float | None = None  # when QEMU was started
        self._owned: OwnedDir | None = None
        self._tmp: Path | None = None
        self._host = HostWatch(())
        self._oom_seen = 0  # OOM kills since boot that a fault note already reported

    # --- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Machine:
        try:
            self._boot()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._teardown()

    def _boot(self) -> None:
        from vmbuild.vm import keys

        ssh_keys = keys.load()
        spec = self._prepare(ssh_keys)
        self._launch(spec)
        self._connect(ssh_keys)

    def _prepare(self, ssh_keys: Keys) -> Prepared:
        """Everything QEMU needs before it starts: the binary, the kernel and initramfs
        (built once), the accelerator, the scratch disk in a work dir of our own."""
        t0 = time.monotonic()
        qemu = which("qemu-system-x86_64", "qemu-system-x86")
        kern = bootkernel.resolve(self.kernel_path)
        initrd = initramfs.ensure(ssh_keys).path
        if kern.modules is not None:
            from vmbuild.vm.cloudkernel import with_modules

            initrd = with_modules(initrd, kern.modules)
        booted.note(kern.path, initrd)
        self.accel = accel_mod.choose(self.accel_requested, qemu, kern.path)
        log.debug(
            "vmbuild: %s kernel %s, %s: %s",
            kern.origin,
            kern.path,
            self.accel.name,
            self.accel.reason,
        )
        sweep_stale()
        self._owned = OwnedDir(TMP_PREFIX)
        self._tmp = self._owned.path
        scratch = self._tmp / "scratch.img"
        make_scratch(scratch, self.disk_size_mib)
        self._host = HostWatch([scratch, *(d.path for d in self.disks)])
        t1 = time.monotonic()
        self.timings["prepare"] = t1 - t0
        self._started = t1
        if self.timeout is not None:  # from here: a first kernel build does not count
            self._deadline = t1 + self.timeout
        return Prepared(qemu, kern.path, initrd, kern.machine, scratch)

    def _launch(self, prep: Prepared) -> None:
        """QEMU started with ``prep``, its QMP monitor connected."""
        from vmbuild.vm.qmp import Monitor

        assert self._tmp is not None and self.accel is not None and self._started is not None
        qmp_ours, qmp_theirs = socket.socketpair()
        con_ours, con_theirs = socket.socketpair()
        self._stack.callback(qmp_ours.close)
        self._console = Console(con_ours)
        spec = VmSpec(
            kernel=prep.kernel,
            initrd=prep.initrd,
            memory_mib=self.memory_mib,
            accel=self.accel.name,
            qmp_fd=qmp_theirs.fileno(),
            console_fd=con_theirs.fileno(),
            scratch=prep.scratch,
            disks=self.disks,
            cpus=self.cpus,
            machine=prep.machine,
        )
        log_file: IO[Any] = self._stack.enter_context((self._tmp / "qemu.log").open("wb"))
        try:
            self._proc = self._stack.enter_context(
                spawn(
                    argv(prep.qemu, spec),
                    stdout=log_file,
                    stderr=log_file,
                    pass_fds=(qmp_theirs.fileno(), con_theirs.fileno()),
                    start_new_session=True,
                    die_with_parent=True,
                )
            )
        finally:
            qmp_theirs.close()
            con_theirs.close()
        self._monitor = Monitor(qmp_ours, alive=self._alive)
        try:
            self._monitor.connect(timeout=self._left(10.0))
        except VmError:
            if not self._alive():
                self._raise_dead("while starting")
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._raise_timeout("the guest did not boot", self.timeout or 0.0)
            raise
        self.timings["qemu_start"] = time.monotonic() - self._started

    def _connect(self, ssh_keys: Keys) -> None:
        """Wait for the guest's init to say it is ready, then open the SSH channel."""
        assert self._console is not None and self._monitor is not None
        t2 = time.monotonic()
        limit = self.timeout if self.timeout and self.timeout < BOOT_TIMEOUT else BOOT_TIMEOUT
        # paramiko (a large import) loads while the guest's kernel boots
        from vmbuild.vm.channel import Channel

        self._wait_ready(self._left(BOOT_TIMEOUT), limit)
        t3 = self._console.init_at or time.monotonic()
        self.timings["kernel_boot"] = t3 - t2
        port = self._monitor.ssh_port()
        self._channel = Channel(port, ssh_keys, timeout=self._left(20.0))
        self.timings["guest_ready"] = time.monotonic() - t3

    def _wait_ready(self, budget: float, limit: float) -> None:
        assert self._console is not None
        end = time.monotonic() + budget
        while not self._console.ready.wait(0.05):
            if not self._healthy():
                self._raise_host_error()
                self._raise_dead("while booting")
            if time.monotonic() > end:
                self._raise_timeout("the guest did not boot", limit)
        if self._console.failure:
            raise VmError(f"the guest failed to start: {self._console.failure}", self._tail_hint())
        if not self._alive() or self._console.ready_at is None:
            self._raise_dead("while booting")

    def _teardown(self) -> None:
        with signals.deferred():  # a SIGTERM now must not leave QEMU or files behind
            self._teardown_now()

    def _teardown_now(self) -> None:
        t0 = time.monotonic()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                self._channel.close()
            self._channel = None
        if self._monitor is not None:
            if self._alive():
                self._monitor.quit()
            self._monitor.close()
            self._monitor = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2.0)
            terminate(self._proc, grace=1.0)
        try:
            self._stack.close()
        finally:
            if self._console is not None:
                self._console.close()
            if self._owned is not None:
                self._owned.remove()
                self._owned = self._tmp = None
            self.timings["teardown"] = time.monotonic() - t0

    # --- commands --------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
        stdin_data: bytes | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run ``argv`` as root in the guest (in /scratch, guest tools on PATH).

        Streams its stdout and stderr to ``stdout``/``stderr`` (default: this process's)
        and returns its exit status. Raises VmError when the guest ran out of memory,
        the scratch disk filled up, the kernel panicked, or the timeout (this call's or
        the machine's) expired; the VM is then stopped.
        """
        if self._channel is None:
            raise VmError("the VM is not running", "use Machine as a context manager")
        if not argv:
            raise VmbuildError("no command given", "say what to run after --")
        t0 = time.monotonic()
        deadline, limit = self._deadline, self.timeout
        if timeout is not None and (deadline is None or t0 + timeout < deadline):
            deadline, limit = t0 + timeout, timeout
        status = self._channel.execute(
            EXEC + shlex.join(argv),
            stdout=stdout if stdout is not None else sys.stdout.buffer,
            stderr=stderr if stderr is not None else sys.stderr.buffer,
            stdin_data=stdin_data,
            deadline=deadline,
            alive=self._healthy,
        )
        self.timings["command"] = time.monotonic() - t0
        self._host.look(self._monitor, now=True)  # the command may have just hit one
        self._raise_host_error()
        if status is None:
            self._lost(deadline, limit)
        assert status is not None
        if status != 0:
            self._check_faults()
        return status

    def open_session(self) -> paramiko.Channel:
        """A new SSH session to the guest, for a caller that drives it itself (the
        failure shell's pseudo-terminal)."""
        if self._channel is None:
            raise VmError("the VM is not running", "use Machine as a context manager")
        return self._channel.transport.open_session()

    # --- faults ----------------------------------------------------------------

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _healthy(self) -> bool:
        """QEMU runs and has reported no host I/O error."""
        return self._alive() and self._host.look(self._monitor) is None

    def _raise_host_error(self) -> None:
        if self._host.error is not None:
            self._kill()
            raise self._host.error

    def _left(self, cap: float) -> float:
        if self._deadline is None:
            return cap
        return max(0.1, min(cap, self._deadline - time.monotonic()))

    def _tail_hint(self) -> str:
        return self._console.hint() if self._console else "the guest printed nothing"

    def _lost(self, deadline: float | None, limit: float | None) -> None:
        self._raise_host_error()
        if deadline is not None and time.monotonic() >= deadline:
            self._raise_timeout("the command did not finish", limit or 0.0)
        # A panicking guest reboots at once (panic=-1), which ends QEMU (-no-reboot).
        assert self._console is not None
        end = time.monotonic() + 3.0
        while self._alive() and not self._console.panic() and time.monotonic() < end:
            time.sleep(0.05)
        if not self._alive() or self._console.panic():
            self._kill()
            self._raise_dead("while running the command")
        oom = self._console.oom() if self._console else None
        if oom:
            self._raise_oom(oom)
        raise VmError("the connection to the guest was lost", self._tail_hint())

    def _raise_dead(self, when: str) -> None:
        assert self._proc is not None and self._console is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(1.0)
        self._console.closed.wait(1.0)
        qlog = self._tmp / "qemu.log" if self._tmp else None
        raise faults.dead(when, self._proc.returncode, self._console, qlog)

    def _raise_timeout(self, what: str, seconds: float) -> None:
        hint = "give it more time with --timeout; " + self._tail_hint()
        ran = time.monotonic() - (self._started or time.monotonic())
        self._kill()
        raise VmTimeout(
            f"{what} within the {seconds:g} s timeout; the VM was stopped",
            hint,
            seconds=seconds,
            ran=ran,
            phase="boot" if self._channel is None else "command",
            stage=self._console.stage if self._console else None,
        )

    def _raise_oom(self, detail: str) -> None:
        self._kill()
        raise faults.GuestOutOfMemory(
            f"the guest ran out of memory ({self.memory_mib} MiB): {detail}",
            "give the VM more memory: --memory MiB (buildVMMemorySize)",
            memory_mib=self.memory_mib,
        )

    def _check_faults(self) -> None:
        assert self._channel is not None
        status, note = self._channel.capture(
            "cat /run/vmbuild/fault", deadline=time.monotonic() + 10, alive=self._alive
        )
        found = faults.parse(note if status == 0 else b"", self._oom_seen)
        self._oom_seen = max(self._oom_seen, found.oom_total)
        if found.oom:
            self._raise_oom(found.oom)
        corruption = self._console.corruption() if self._console else None
        if corruption:  # it hides free blocks too: checked before a full disk
            self._kill()
            raise faults.corrupt(corruption)
        if found.disk_full:
            self._kill()
            raise faults.GuestDiskFull(
                f"the scratch disk is full ({self.disk_size_mib} MiB)",
                "give the VM a bigger scratch disk: --disk-size MiB (diskSize)",
                size_mib=self.disk_size_mib,
            )

    def _kill(self) -> None:
        if self._proc is not None:
            terminate(self._proc, grace=0.5)
