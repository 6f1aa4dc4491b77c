"""``vmbuild vm run`` and ``vmbuild doctor``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vmbuild.cli.common import add_command
from vmbuild.errors import VmbuildError
from vmbuild.vm.qemu import Disk


def _disk(text: str) -> Disk:
    path, _, flag = text.rpartition(":")
    if flag == "ro" and path:
        return Disk(Path(path), readonly=True)
    if flag == "rw" and path:
        return Disk(Path(path))
    return Disk(Path(text))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vm = add_command(
        subparsers,
        "vm",
        help="run things in the build VM",
        examples=["vmbuild vm run -- uname -a", "vmbuild vm run --disk img.raw:ro -- ls /dev"],
    )
    vm_sub = vm.add_subparsers(
        dest="vm_command", required=True, metavar="VMCOMMAND", title="commands"
    )
    run = add_command(
        vm_sub,
        "run",
        help="boot a fresh guest, run COMMAND as root in it, tear it down",
        description="Boot a throwaway guest, run COMMAND as root (busybox and the guest "
        "tools on PATH, the scratch disk at /scratch), stream its output, exit with its "
        "status (unlike the other commands, whose exit status says what kind of error "
        "happened). Extra disks appear as /dev/vdb, /dev/vdc, ... in order.",
        examples=[
            "vmbuild vm run -- uname -a",
            "vmbuild vm run --timings --accel tcg -- true",
            "vmbuild vm run --disk data.img:ro --memory 1024 -- sh -c 'ls -l /dev/vdb'",
        ],
    )
    run.add_argument(
        "--memory", type=_positive, default=512, metavar="MiB", help="guest memory (default 512)"
    )
    run.add_argument(
        "--disk-size",
        type=_positive,
        default=1024,
        metavar="MiB",
        help="scratch disk size (default 1024)",
    )
    run.add_argument(
        "--disk",
        type=_disk,
        action="append",
        default=[],
        metavar="FILE[:ro]",
        help="attach FILE as the next virtio-blk disk; :ro makes it read-only",
    )
    run.add_argument(
        "--cpus", type=_positive, default=1, metavar="N", help="guest CPUs (default 1)"
    )
    run.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="accelerator (default auto: KVM only where a probe boots)",
    )
    run.add_argument("--kernel", type=Path, metavar="PATH", help="boot this kernel instead")
    run.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="stop the VM and fail after S seconds (boot included)",
    )
    run.add_argument("--timings", action="store_true", help="print where the time went (to stderr)")
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND...",
        help="the command to run as root in the guest, after --",
    )
    run.set_defaults(func=run_handler)

    doctor = add_command(
        subparsers,
        "doctor",
        help="say what this host has and lacks",
        description="Check what the build VM needs on this host (QEMU, the guest tools, "
        "the guest kernel, KVM) and say how to fix what is missing.",
        examples=["vmbuild doctor", "vmbuild doctor --reprobe"],
    )
    doctor.add_argument(
        "--reprobe", action="store_true", help="forget the cached KVM verdict and probe again"
    )
    doctor.set_defaults(func=doctor_handler)


def run_handler(args: argparse.Namespace) -> int:
    from vmbuild.vm.machine import Machine

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise VmbuildError("no command given", "usage: vmbuild vm run [options] -- COMMAND...")
    for disk in args.disk:
        if not disk.path.is_file():
            raise VmbuildError(f"disk {disk.path} does not exist", "give --disk an existing file")
    machine = Machine(
        memory_mib=args.memory,
        disk_size_mib=args.disk_size,
        disks=args.disk,
        accel=args.accel,
        kernel=args.kernel,
        timeout=args.timeout,
        cpus=args.cpus,
    )
    try:
        with machine as vm:
            status = vm.run(command)
    finally:
        if args.timings:
            _print_timings(machine.timings)
    return status


def _print_timings(timings: dict[str, float]) -> None:
    order = ("prepare", "qemu_start", "kernel_boot", "guest_ready", "command", "teardown")
    parts = [f"{k}={timings[k]:.3f}s" for k in order if k in timings]
    total = sum(timings.get(k, 0.0) for k in order)
    print(f"vmbuild: timings: {' '.join(parts)} total={total:.3f}s", file=sys.stderr)


def doctor_handler(args: argparse.Namespace) -> int:
    from vmbuild.vm.doctor import report

    return report(reprobe=bool(args.reprobe))
