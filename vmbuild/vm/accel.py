"""Choosing the accelerator: KVM only where a real boot shows it works, else TCG.

An openable ``/dev/kvm`` is not enough: on paravirtual (PVM) KVM hosts a stock kernel
hangs early in boot. So ``auto`` boots the guest kernel once under KVM without an
initramfs: a working KVM runs it to its "cannot mount root" panic, which (``panic=-1``
and ``-no-reboot``) ends QEMU within a second; a hang or a QEMU error means TCG. The
verdict is cached under the host kernel's and QEMU's identity, so it is paid once; the
probe holds the entry's lock, so concurrent first builds wait for one probe.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmbuild import cache
from vmbuild.errors import StepFailed, VmbuildError
from vmbuild.run import run
from vmbuild.vm.qemu import BARE

log = logging.getLogger("vmbuild")

KIND = "accel-probe"
PROBE_VERSION = "v1"
PROBE_TIMEOUT = 6.0
KVM = Path("/dev/kvm")


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str
    probed_now: bool = False


def kvm_status() -> tuple[bool, str]:
    """Whether /dev/kvm exists and opens read-write, and if not, why."""
    if not KVM.exists():
        return False, "no /dev/kvm (no KVM on this host, or the kvm module is not loaded)"
    try:
        fd = os.open(KVM, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"/dev/kvm does not open: {exc.strerror} (add yourself to group kvm)"
    os.close(fd)
    return True, "/dev/kvm opens"


def probe_key(qemu: str) -> str:
    st = os.stat(qemu)
    u = os.uname()
    return cache.key(
        [PROBE_VERSION, u.release, u.version, u.machine, qemu, str(cache.file_identity(st))]
    )


def probe_argv(qemu: str, kernel: Path) -> list[str]:
    return [
        qemu,
        *BARE,
        "-M",
        "microvm,x-option-roms=off,rtc=off,acpi=off,isa-serial=on",
        "-accel",
        "kvm",
        "-m",
        "128M",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 panic=-1 reboot=t",
        "-serial",
        "stdio",
    ]


def probe(qemu: str, kernel: Path, runner: Callable[..., object] = run) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM without a root file system; (works, why)."""
    started = time.monotonic()
    try:
        proc = runner(
            probe_argv(qemu, kernel),
            capture=True,
            check=False,
            timeout=PROBE_TIMEOUT,
            what="the KVM probe",
            die_with_parent=True,  # a hung probe must not outlive a killed vmbuild
        )
    except StepFailed:
        return False, (
            f"KVM probe: a test kernel hung under KVM for {PROBE_TIMEOUT:.0f} s "
            "(a paravirtual/nested KVM that cannot run stock kernels)"
        )
    took = time.monotonic() - started
    out: bytes = getattr(proc, "stdout", b"") or b""
    err: bytes = getattr(proc, "stderr", b"") or b""
    status = getattr(proc, "returncode", 1)
    if b"Kernel panic" in out or b"VFS: Unable to mount root" in out:
        return True, f"KVM probe: a test kernel booted under KVM in {took:.1f} s"
    detail = (err.decode(errors="replace").strip().splitlines() or [f"status {status}"])[-1]
    return False, f"KVM probe: QEMU failed under KVM: {detail}"


def choose(requested: str, qemu: str, kernel: Path, runner: Callable[..., object] = run) -> Accel:
    """The accelerator for ``requested`` ("auto", "kvm" or "tcg")."""
    if requested == "tcg":
        return Accel("tcg", "TCG requested")
    ok, why = kvm_status()
    if requested == "kvm":
        if not ok:
            raise VmbuildError(f"KVM requested but {why}", "use --accel tcg or --accel auto")
        return Accel("kvm", "KVM requested")
    if requested != "auto":
        raise VmbuildError(f"unknown accelerator {requested!r}", "use auto, kvm or tcg")
    if not ok:
        return Accel("tcg", why)
    return cached_probe(qemu, kernel, runner)


def cached_probe(qemu: str, kernel: Path, runner: Callable[..., object] = run) -> Accel:
    digest = probe_key(qemu)
    saved = _saved(digest)
    if saved is not None:
        return saved
    with cache.lock(KIND, digest, "vmbuild: waiting for another vmbuild's KVM probe"):
        saved = _saved(digest)  # the probe we waited for
        if saved is not None:
            return saved
        works, why = probe(qemu, kernel, runner)
        accel = Accel("kvm" if works else "tcg", why, probed_now=True)
        with cache.publish(KIND, digest) as tmp:
            (tmp / "result.json").write_text(json.dumps({"accel": accel.name, "reason": why}))
    log.info("vmbuild: using %s: %s", accel.name.upper(), why)
    return accel


def _saved(digest: str) -> Accel | None:
    where = cache.entry(KIND, digest) / "result.json"
    try:
        saved = json.loads(where.read_text())
        return Accel(str(saved["accel"]), str(saved["reason"]) + " (cached)")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: probe again
        shutil.rmtree(where.parent, ignore_errors=True)
        return None


def forget(qemu: str) -> None:
    """Drop the cached verdict (``vmbuild doctor --reprobe``)."""
    shutil.rmtree(cache.entry(KIND, probe_key(qemu)), ignore_errors=True)
