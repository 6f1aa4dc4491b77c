"""runAsRoot and exportImage in the build VM: the host's side.

The base image's layers are rewritten into overlayfs lowers on the host as tar streams
(each what its layer changed in the tree a runtime unpacks, see ``vmbuild.oci.rootfs``)
and laid end to end on one read-only disk; copyToRoot goes in as a second tar disk; a
sparse output disk of diskSize MiB receives the result. The guest script
``guest/root-step`` unpacks the lowers, stacks them under an overlay whose upper
dir is the new layer, runs the script chrooted in the merged tree, and packs the upper
dir (or, for exportImage, the merged tree). Back on the host the result is rewritten
into image form deterministically.
Each build VM is bounded by ``vmbuild build --timeout`` / VMBUILD_TIMEOUT
(:mod:`vmbuild.timeouts`); the error then names the step and how long it ran.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmbuild import timeouts
from vmbuild.errors import StepFailed, VmError
from vmbuild.oci import layer as layer_writer
from vmbuild.oci.compress import Compression
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.layer import Packed
from vmbuild.oci.merge import open_layers
from vmbuild.oci.overlay import from_overlay, to_overlay
from vmbuild.oci.reader import BaseImage
from vmbuild.oci.retar import retar
from vmbuild.oci.tree import Tree
from vmbuild.run import Tee
from vmbuild.vm.faults import GuestDiskFull, GuestOutOfMemory, VmTimeout
from vmbuild.vm.machine import Disk, Machine
from vmbuild.vm.stepfiles import step_tar

log = logging.getLogger("vmbuild")
MIB = 1024 * 1024
# ext4 metadata, the overlay's work dir and copy-ups: room on top of the unpacked lowers
DISK_OVERHEAD = 1.25
DISK_MARGIN_MIB = 64
RUN_AS_ROOT = "runAsRoot"
EXTRA_COMMANDS = "extraCommands"
SCRIPT_HINTS = {
    RUN_AS_ROOT: "fix the script; it runs as root in the image with bash -e, in /",
    EXTRA_COMMANDS: "fix the script; it runs with bash -e in the new layer's root",
}
# the guest's own stages (guest/root-step), as a failure names them
STAGES = {"setup": "stacking the base image's layers", "pack": "packing the result"}
# the fault a stage's line in the status record may name: the result outgrew its disk
OUT_FULL = "out-full"


@dataclass(frozen=True)
class StageOutcome:
    """One line of the guest's status record (``/step/status``): how a stage ended."""

    stage: str
    status: int
    fault: str | None = None


@dataclass(frozen=True)
class RootStep:
    """What one root step in the build VM is given (the builders make it from a spec)."""

    name: str  # names the step when it runs out of time, e.g. "runAsRoot"
    disk_size: int  # MiB of the VM's work disk: the lowers unpacked, the result made
    memory: int  # MiB of the build VM
    script: str = ""  # runAsRoot: run as root, chrooted in the merged tree
    extra_commands: str = ""  # run after it, in the new layer's root
    uid: int = 0  # the owner of copyToRoot's files in the content disk
    gid: int = 0


def lowers_disk(base: BaseImage | None, workdir: Path) -> tuple[Path, list[str]]:
    """One disk with every lower in overlay form, and their ``offset:length`` ranges."""
    path = workdir / "lowers.img"
    with open(path, "wb") as disk, contextlib.ExitStack() as stack:
        ranges = to_overlay(open_layers(base.layers if base else [], workdir, stack), disk)
        disk.write(b"\0" * 1024)  # never an empty disk
    return path, [f"{start}:{length}" for start, length in ranges]


def check_disk(needed_bytes: int, disk_size: int) -> int:
    needed = int(needed_bytes * DISK_OVERHEAD / MIB) + DISK_MARGIN_MIB
    if needed > disk_size:
        raise VmError(
            f"the base image and copyToRoot need about {needed} MiB on the build VM's disk, "
            f"but diskSize is {disk_size} MiB",
            f"set diskSize = {(needed + 255) // 256 * 256} in the spec",
        )
    return needed


def _sparse(path: Path, size_mib: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
    return path


def _run_step(
    vm: Machine,
    mode: str,
    ranges: list[str],
    disk_size: int,
    memory: int,
    needed: int,
    files: dict[str, bytes] | None = None,
    has_content: bool = False,
) -> None:
    tee = Tee(sys.stderr.buffer)
    content = "/dev/vdc" if mode == "build" and has_content else "-"
    lowers = "/dev/vdd" if mode == "build" else "/dev/vdc"
    try:
        status = vm.run(
            [
                "sh",
                "-c",
                "mkdir /step && busybox tar -xf - -C /step"
                ' && exec sh /step/root-step "$@" </dev/null',
                "root-step",
                mode,
                "/dev/vdb",
                content,
                lowers,
                *ranges,
            ],
            stdout=tee,  # type: ignore[arg-type]
            stderr=tee,  # type: ignore[arg-type]
            stdin_data=step_tar(files or {}),  # the step's files come in on stdin
        )
    except GuestOutOfMemory as exc:
        raise GuestOutOfMemory(
            f"the build VM ran out of memory (buildVMMemorySize = {memory} MiB)",
            "raise buildVMMemorySize in the spec",
            memory_mib=memory,
        ) from exc
    except GuestDiskFull as exc:
        raise _disk_full(disk_size, needed) from exc
    if status == 0:
        return
    outcome = _last_outcome(vm, status)
    if outcome is not None and outcome.fault == OUT_FULL:
        raise _disk_full(disk_size, needed)
    stage = outcome.stage if outcome is not None else None
    if stage in SCRIPT_HINTS:
        raise StepFailed(
            f"{stage} failed with status {status}", status, SCRIPT_HINTS[stage], output=tee.text()
        )
    doing = f" while {STAGES[stage]}" if stage in STAGES else ""
    failed = VmError(
        f"the build step in the VM failed{doing} (status {status})",
        "the base image may be malformed; rerun with --debug",
    )
    failed.output = tee.text()
    raise failed


def read_record(text: str) -> list[StageOutcome]:
    """The guest's status record: one ``STAGE STATUS [FAULT]`` line per stage that ended."""
    outcomes = []
    for line in text.splitlines():
        stage, code, *fault = line.split()
        outcomes.append(StageOutcome(stage, int(code), fault[0] if fault else None))
    return outcomes


def _last_outcome(vm: Machine, status: int) -> StageOutcome | None:
    """How the stage that ran last ended, from the guest's status record.

    None when there is no record, or its last line is for another status than ``status``.
    """
    out = io.BytesIO()
    if vm.run(["cat", "/step/status"], stdout=out, stderr=io.BytesIO()) != 0:
        return None
    try:
        outcomes = read_record(out.getvalue().decode(errors="replace"))
    except ValueError:
        return None
    last = outcomes[-1] if outcomes else None
    return last if last is not None and last.status == status else None


def _disk_full(disk_size: int, needed: int) -> GuestDiskFull:
    return GuestDiskFull(
        f"the build VM's disk is full (diskSize = {disk_size} MiB; the base image and "
        f"copyToRoot alone needed about {needed} MiB)",
        "raise diskSize in the spec",
        size_mib=disk_size,
    )


@contextlib.contextmanager
def _bounded(step: str) -> Iterator[float | None]:
    """The time limit for ``step``'s VM; a VmTimeout in the block names the step."""
    try:
        yield timeouts.step_timeout()
    except VmTimeout as exc:
        hint = "allow more time: vmbuild build --timeout SECONDS (or VMBUILD_TIMEOUT)"
        if exc.phase == "boot":
            raise VmError(
                f"the build VM for {step} did not boot within the {exc.seconds:g} s timeout "
                f"(stopped after {exc.ran:.1f} s)",
                hint,
            ) from exc
        raise VmError(
            f"{step} did not finish within the {exc.seconds:g} s timeout: stopped after "
            f"{exc.ran:.1f} s (the build VM's boot included)",
            hint,
        ) from exc


def run_as_root(
    step: RootStep,
    base: BaseImage | None,
    tree: Tree,
    workdir: Path,
    compression: Compression,
    mtime: int,
) -> Layer:
    """The new layer: copyToRoot, then runAsRoot (as root, in the VM), then extraCommands."""
    lowers, ranges = lowers_disk(base, workdir)
    content = workdir / "content.tar"
    with open(content, "wb") as f:
        layer_writer.pack(
            tree, f, compression="none", mtime=mtime, owner=layer_writer.Owner(step.uid, step.gid)
        )
    needed = check_disk(lowers.stat().st_size + 2 * content.stat().st_size, step.disk_size)
    out = _sparse(workdir / "out.img", step.disk_size)
    with (
        _bounded(step.name) as timeout,
        Machine(
            memory_mib=step.memory,
            disk_size_mib=step.disk_size,
            disks=[Disk(out), Disk(content, readonly=True), Disk(lowers, readonly=True)],
            timeout=timeout,
        ) as vm,
    ):
        files = {
            RUN_AS_ROOT: step.script.encode(),
            EXTRA_COMMANDS: step.extra_commands.encode(),
        }
        _run_step(
            vm,
            "build",
            ranges,
            step.disk_size,
            step.memory,
            needed,
            files,
            has_content=bool(tree.entries),
        )
    blob = workdir / "layer-vm"
    with open(blob, "wb") as f:
        packed = from_overlay(out, f, compression=compression, mtime=mtime)
    out.unlink()
    return Layer(packed.diff_id, BlobRef.whole(blob), compression, packed.digest)


def export_in_vm(
    step: RootStep, base: BaseImage, workdir: Path, sink: BinaryIO, mtime: int
) -> Packed:
    """The merged filesystem of ``base``, flattened by the VM's overlay, into ``sink``."""
    lowers, ranges = lowers_disk(base, workdir)
    needed = check_disk(lowers.stat().st_size, step.disk_size)
    out = _sparse(workdir / "out.img", step.disk_size)
    with (
        _bounded(step.name) as timeout,
        Machine(
            memory_mib=step.memory,
            disk_size_mib=step.disk_size,
            disks=[Disk(out), Disk(lowers, readonly=True)],
            timeout=timeout,
        ) as vm,
    ):
        _run_step(vm, "export", ranges, step.disk_size, step.memory, needed)
    return retar(out, sink, compression="none", mtime=mtime, where="the exported tree")
