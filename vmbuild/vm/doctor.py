"""``vmbuild doctor``: what this host has and lacks for the build VM, and how to fix it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from vmbuild import cache
from vmbuild.errors import VmbuildError
from vmbuild.progress import human
from vmbuild.run import run
from vmbuild.vm import accel, initramfs, kernel

OK, MISSING, NOTE = "ok", "MISSING", "note"


class Report:
    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.problems = 0

    def line(self, state: str, what: str, detail: str, fix: str = "") -> None:
        if state == MISSING:
            self.problems += 1
        self.out(f"[{state:>7}] {what}: {detail}")
        if fix:
            self.out(f"          fix: {fix}")


def _qemu(r: Report) -> str | None:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        r.line(MISSING, "qemu", "qemu-system-x86_64 not found", "apt-get install qemu-system-x86")
        return None
    version = run([qemu, "--version"], capture=True, check=False).stdout.decode().splitlines()
    r.line(OK, "qemu", f"{qemu} ({version[0] if version else 'unknown version'})")
    return qemu


def _tools(r: Report) -> None:
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs:
        r.line(OK, "mkfs.ext4", mkfs)
    else:
        r.line(MISSING, "mkfs.ext4", "not found", "apt-get install e2fsprogs")
    lacking = [
        f"{path} ({pkg})"
        for path, pkg in (*initramfs.TOOLS, *initramfs.HOST_DATA)
        if not Path(path).exists()
    ]
    if lacking:
        pkgs = sorted(
            {
                pkg
                for path, pkg in (*initramfs.TOOLS, *initramfs.HOST_DATA)
                if not Path(path).exists()
            }
        )
        r.line(
            MISSING,
            "guest tools",
            "missing " + ", ".join(lacking),
            "apt-get install " + " ".join(pkgs),
        )
    else:
        r.line(OK, "guest tools", "busybox, dash, GNU tar, shadow, PAM, dropbear")
    optional = [p for p, _ in initramfs.OPTIONAL_TOOLS if not Path(p).exists()]
    if optional:
        r.line(
            NOTE, "optional guest tools", "no " + ", ".join(optional), "apt-get install libcap2-bin"
        )


def _kernel(r: Report) -> Path | None:
    built = kernel.cached_build()
    if built:
        r.line(OK, "guest kernel", f"built and cached: {built}")
        return built
    lacking = kernel.missing_build_tools()
    if lacking:
        r.line(
            MISSING,
            "guest kernel",
            "not built, and cannot be: missing " + ", ".join(lacking),
            "apt-get install " + " ".join(lacking) + " (or pass --kernel PATH)",
        )
        return None
    r.line(
        NOTE,
        "guest kernel",
        f"not built yet; the first VM builds it from {kernel.SOURCE} ({kernel.estimate()})",
        "build it now: scripts/build-kernel",
    )
    return None


def _accel(r: Report, qemu: str | None, kern: Path | None, reprobe: bool) -> None:
    ok, why = accel.kvm_status()
    if not ok:
        r.line(NOTE, "accelerator", f"TCG (software emulation): {why}")
        return
    if qemu is None or kern is None:
        r.line(NOTE, "accelerator", f"{why}; probe pending (needs qemu and the guest kernel)")
        return
    if reprobe:
        accel.forget(qemu)
    chosen = accel.cached_probe(qemu, kern)
    name = "KVM" if chosen.name == "kvm" else "TCG (software emulation)"
    fix = "" if chosen.name == "kvm" else "nothing to do: VMs run under TCG, slower but correct"
    r.line(OK, "accelerator", f"{name}: {chosen.reason}", fix)


def _cache(r: Report) -> None:
    from vmbuild import cachelist

    root = cache.cache_dir()
    if not root.exists():
        r.line(NOTE, "cache", f"{root} (empty; `vmbuild cache ls` lists it once used)")
        return
    kinds = cachelist.summary(cachelist.entries(root))
    total = sum(k.size for k in kinds)
    counts = ", ".join(f"{k.kind}: {k.count}" for k in kinds if k.kind in _CACHE_KINDS)
    detail = f"{root} ({human(total, binary=True)}; {counts})"
    r.line(OK, "cache", f"{detail}: `vmbuild cache ls` lists it, `vmbuild cache prune` trims it")


_CACHE_KINDS = ("kernel", "initramfs", "blobs", "steps", "pulled")


def report(reprobe: bool = False, out: Callable[[str], None] = print) -> int:
    r = Report(out)
    qemu = _qemu(r)
    _tools(r)
    kern = _kernel(r)
    try:
        _accel(r, qemu, kern, reprobe)
    except VmbuildError as exc:
        r.line(MISSING, "accelerator", exc.message, exc.hint or "")
    _cache(r)
    out("all set" if r.problems == 0 else f"{r.problems} problem(s); see the fixes above")
    sys.stdout.flush()
    return 0 if r.problems == 0 else 1
