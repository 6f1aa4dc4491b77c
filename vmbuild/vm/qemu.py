"""The QEMU command line for a build VM (pure: no processes, no files).

The default machine is ``microvm``: no PCI, no ACPI, no option ROMs, a qboot firmware
that jumps straight into the kernel, devices on virtio-mmio (QEMU appends their
``virtio_mmio.device=`` entries to the kernel command line). ``pc`` with virtio-pci is
there for kernels without virtio-mmio (Debian's cloud kernel). Every disk is virtio-blk:
the scratch disk first (``/dev/vda``), then the extra disks in order (``/dev/vdb``, ...).
The guest's SSH port is forwarded to an ephemeral port on 127.0.0.1, QMP and the serial
console run over file descriptors QEMU inherits. Disk ``i`` (0 = scratch) is the
block node ``d{i}``; a host I/O error on it is reported to the guest, never a pause.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_ARGS = (
    "console=ttyS0",
    "quiet",
    "panic=-1",  # reboot at once on panic; with -no-reboot that ends QEMU
    "reboot=t",
    "tsc=reliable",
    "random.trust_cpu=on",
    "8250.nr_uarts=1",
    "rdinit=/init",
    # Under TCG, calibrating the local APIC timer and the delay loop costs a few hundred
    # milliseconds (more on a busy host): tick from the PIT, preset loops-per-jiffy.
    "nolapic_timer",
    "lpj=10000000",
    "ip=10.0.2.15::10.0.2.2:255.255.255.0:vmbuild:eth0:off",  # QEMU's user-mode network
)


# Disks a VM can have, the scratch disk included: microvm has 8 virtio-mmio transports
# (24 only with a second IO-APIC, which needs ACPI); the network and the RNG take two.
MAX_DISKS = 6


@dataclass(frozen=True)
class Disk:
    """An extra disk for the guest; attached in order as /dev/vdb, /dev/vdc, ...

    ``readonly`` disks are read-only to the guest (QEMU opens them read-only too).
    """

    path: Path
    readonly: bool = False


@dataclass(frozen=True)
class VmSpec:
    """Everything the command line depends on."""

    kernel: Path
    initrd: Path
    memory_mib: int
    accel: str  # "kvm" or "tcg"
    qmp_fd: int
    console_fd: int
    scratch: Path | None = None
    disks: Sequence[Disk] = ()
    cpus: int = 2
    machine: str = "microvm"
    extra_args: Sequence[str] = field(default_factory=tuple)
    ssh: bool = True


def opt(value: str | os.PathLike[str]) -> str:
    """Quote a value for a QEMU ``key=value,...`` option (a comma is doubled)."""
    return os.fspath(value).replace(",", ",,")


@dataclass(frozen=True)
class MachineKind:
    """What differs between the machines a build VM can be: QEMU's ``-M`` value and
    the transport of its virtio devices (``virtio-blk-device`` or ``virtio-blk-pci``)."""

    machine: str
    transport: str

    def device(self, kind: str) -> str:
        """The device name of virtio ``kind`` ("blk", "net", "rng") on this machine."""
        return f"virtio-{kind}-{self.transport}"


MACHINES = {
    # rtc=on: without a CMOS clock the kernel waits a full second for one at boot.
    "microvm": MachineKind("microvm,x-option-roms=off,rtc=on,acpi=off,isa-serial=on", "device"),
    "pc": MachineKind("pc", "pci"),
}


def _cpu(spec: VmSpec) -> list[str]:
    if spec.accel == "kvm":
        # -cpu host aborts on paravirtual KVM hosts; QEMU's default model is safe.
        return ["-accel", "kvm"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def _drives(spec: VmSpec) -> list[str]:
    args: list[str] = []
    drives: list[tuple[Path, bool]] = []
    if spec.scratch is not None:
        drives.append((spec.scratch, False))
    drives += [(d.path, d.readonly) for d in spec.disks]
    for i, (path, readonly) in enumerate(drives):
        ro = ",read-only=on" if readonly else ""
        args += [
            "-blockdev",
            f"driver=file,node-name=f{i},filename={opt(path)},cache.direct=off,"
            f"cache.no-flush=on{ro}",
            "-blockdev",
            f"driver=raw,node-name=d{i},file=f{i}{ro}",
            "-device",
            # A host write or read error (a full TMPDIR) reaches the guest as an I/O
            # error instead of pausing the VM (QEMU's default for ENOSPC), and QEMU
            # reports it on QMP (BLOCK_IO_ERROR), which the Machine watches.
            f"{MACHINES[spec.machine].device('blk')},drive=d{i},serial=vmbuild{i},werror=report,rerror=report",
        ]
    return args


def _net(spec: VmSpec) -> list[str]:
    if not spec.ssh:
        return []
    return [
        "-netdev",
        "user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:0-:22",
        "-device",
        f"{MACHINES[spec.machine].device('net')},netdev=n0",
    ]


# What every QEMU vmbuild starts begins with: no default devices or config files, no
# display, and a guest reboot ends QEMU.
BARE = ("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot")


def argv(qemu: str, spec: VmSpec) -> list[str]:
    """The full QEMU argv for ``spec``."""
    kind = MACHINES[spec.machine]
    append = " ".join((*KERNEL_ARGS, *spec.extra_args))
    return [
        qemu,
        *BARE,
        "-M",
        kind.machine,
        *_cpu(spec),
        "-smp",
        str(spec.cpus),
        "-m",
        f"{spec.memory_mib}M",
        "-kernel",
        os.fspath(spec.kernel),
        "-initrd",
        os.fspath(spec.initrd),
        "-append",
        append,
        "-chardev",
        f"socket,id=con,fd={spec.console_fd}",
        "-serial",
        "chardev:con",
        "-chardev",
        f"socket,id=qmp,fd={spec.qmp_fd}",
        "-mon",
        "chardev=qmp,mode=control",
        *_drives(spec),
        *_net(spec),
        "-device",
        kind.device("rng"),
    ]
