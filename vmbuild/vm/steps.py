"""runAsRoot and exportImage in the build VM: the host's side.

The base image's layers become read-only ext4 images on the host, once, cached by chain
id (:mod:`vmbuild.vm.lowers`); each is a disk of the VM. copyToRoot goes in as a tar disk;
a sparse output disk of diskSize MiB receives the result. The guest script
``guest/root-step`` mounts the lowers, stacks them under an overlay whose upper dir is
the new layer, runs the script chrooted in the merged tree, and packs the upper dir (or,
for exportImage, the merged tree). Back on the host the result is rewritten into image
form deterministically. An unchanged runAsRoot step comes from the step cache
(:mod:`vmbuild.stepcache`) without a VM.
Each build VM is bounded by ``vmbuild build --timeout`` / VMBUILD_TIMEOUT
(:mod:`vmbuild.timeouts`); the error then names the step and how long it ran.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from vmbuild import progress, stepcache, timeouts
from vmbuild.errors import StepFailed, VmError
from vmbuild.oci import layer as layer_writer
from vmbuild.oci.compress import Compression, compressor
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.sinks import HashingWriter
from vmbuild.oci.tree import Tree
from vmbuild.progress import human
from vmbuild.run import Tee
from vmbuild.vm.faults import GuestDiskFull, GuestOutOfMemory, VmTimeout
from vmbuild.vm.stepkey import guest_identity

# The VM's side (QEMU, SSH, the lowers, the result's rewriting) is imported where a VM
# boots, not here: a step-cache hit loads none of it (tests/unit/test_startup.py).
if TYPE_CHECKING:
    from vmbuild.oci.layer import Packed
    from vmbuild.oci.reader import BaseImage
    from vmbuild.vm.machine import Machine
    from vmbuild.vm.qemu import Disk

log = logging.getLogger("vmbuild")
MIB = 1024 * 1024
# ext4 metadata, the overlay's work dir and copy-ups: room on top of the new layer
DISK_OVERHEAD = 1.25
DISK_MARGIN_MIB = 64
RUN_AS_ROOT = "runAsRoot"
EXTRA_COMMANDS = "extraCommands"
SCRIPT_HINTS = {
    RUN_AS_ROOT: "fix the script; it runs as root in the image with bash -e, in /",
    EXTRA_COMMANDS: "fix the script; it runs with bash -e in the new layer's root",
}
# the build's progress stages (vmbuild.progress)
PREPARING = "preparing base layers"
BOOTING = "booting the build VM"
MERGING = "merging the layers in the build VM"
PACKING = "packing the new layer"
PACKING_EXPORT = "packing the exported tree"
# the guest's own stages (guest/root-step), as a failure names them
STAGES = {"setup": "stacking the base image's layers", "pack": "packing the result"}
# the stages that run what the spec wrote, as a timeout names them
SCRIPT_STAGES = {
    "configure": "configure = true (the Debian packages' maintainer scripts)",
    RUN_AS_ROOT: RUN_AS_ROOT,
    EXTRA_COMMANDS: EXTRA_COMMANDS,
}
# the faults a stage's line in the status record may name: the result outgrew its disk;
# a script the configure stage ran failed (then: PACKAGE SCRIPT STATUS)
OUT_FULL = "out-full"
SCRIPT_FAILED = "script-failed"


@dataclass(frozen=True)
class StageOutcome:
    """One line of the guest's status record (``/step/status``): how a stage ended."""

    stage: str
    status: int
    fault: str | None = None
    detail: tuple[str, ...] = ()  # what the fault names


@dataclass(frozen=True)
class RootStep:
    """What one root step in the build VM is given (the builders make it from a spec)."""

    name: str  # names the step when it runs out of time, e.g. "runAsRoot"
    disk_size: int  # MiB of the VM's work disk: copy-ups and the result made
    memory: int  # MiB of the build VM
    script: str = ""  # runAsRoot: run as root, chrooted in the merged tree
    extra_commands: str = ""  # run after it, in the new layer's root
    uid: int = 0  # the owner of copyToRoot's files in the content disk
    gid: int = 0
    configure: str = ""  # configure = true: run before runAsRoot, chrooted likewise
    debs: tuple[Path, ...] = ()  # the .deb files it installs (a disk of their own)


def lower_disks(base: BaseImage | None, workdir: Path, others: int) -> list[Disk]:
    """The base's lowers (ext4 images, bottom first) as read-only disks, as many as fit
    beside the scratch disk and ``others`` more."""
    from vmbuild.vm import lowers
    from vmbuild.vm.qemu import MAX_DISKS, Disk

    with progress.current().stage(PREPARING) as stage:

        def shown(done: int, total: int, made: int) -> None:
            stage.detail(f"{done} of {total}" + (f", {human(made)} made" if made else ""))

        made = lowers.images(base.layers if base else [], workdir, MAX_DISKS - 1 - others, shown)
    return [Disk(path, readonly=True) for path in made]


@contextlib.contextmanager
def _booted(
    memory: int, disk_size: int, disks: list[Disk], timeout: float | None
) -> Iterator[Machine]:
    """A build VM, its boot timed as a stage of the build's progress."""
    from vmbuild.vm.machine import Machine

    with contextlib.ExitStack() as stack:
        with progress.current().stage(BOOTING):
            vm = stack.enter_context(
                Machine(memory_mib=memory, disk_size_mib=disk_size, disks=disks, timeout=timeout)
            )
        yield vm


def check_disk(needed_bytes: int, disk_size: int) -> int:
    needed = int(needed_bytes * DISK_OVERHEAD / MIB) + DISK_MARGIN_MIB
    if needed > disk_size:
        raise VmError(
            f"the base image and copyToRoot need about {needed} MiB on the build VM's disk, "
            f"but diskSize is {disk_size} MiB",
            f"set diskSize = {(needed + 255) // 256 * 256} in the spec",
        )
    return needed


def _device(n: int) -> str:
    """The guest's name of disk ``n`` (0 = /dev/vda): vda..vdz, then vdaa..."""
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return "/dev/vd" + letters


def _sparse(path: Path, size_mib: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
    return path


def _run_step(
    vm: Machine,
    mode: str,
    first_lower: int,
    lower_count: int,
    disk_size: int,
    memory: int,
    needed: int,
    files: dict[str, bytes] | None = None,
    has_content: bool = False,
    has_debs: bool = False,
) -> None:
    from vmbuild.vm import debdisk, shell
    from vmbuild.vm.stepfiles import step_tar

    tee = Tee(sys.stderr.buffer)
    content = "/dev/vdc" if mode == "build" and has_content else "-"
    debs = "/dev/vdd" if has_debs else "-"
    # /dev/vda is the scratch disk, vdb the output, then (build) the content, the .deb
    # files (configure = true), the lowers
    devices = [_device(first_lower + i) for i in range(lower_count)]
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
                debs,
                *devices,
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
    if stage == RUN_AS_ROOT:
        shell.failure_shell(vm, status)  # with --shell-on-failure: until the user leaves
    if stage == debdisk.CONFIGURE:
        said = outcome.detail if outcome is not None and outcome.fault == SCRIPT_FAILED else ()
        raise StepFailed(debdisk.failure(said, status), status, debdisk.HINT, output=tee.text())
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
    """The guest's status record: one ``STAGE STATUS [FAULT [DETAIL...]]`` line per stage
    that ended."""
    outcomes = []
    for line in text.splitlines():
        stage, code, *fault = line.split()
        outcomes.append(
            StageOutcome(stage, int(code), fault[0] if fault else None, tuple(fault[1:]))
        )
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
        hint = "allow more time: vmbuild build --timeout SECONDS (or VMBUILD_TIMEOUT; 0: no limit)"
        if exc.phase == "boot":
            raise VmError(
                f"the build VM for {step} did not boot within the {exc.seconds:g} s timeout "
                f"(stopped after {exc.ran:.1f} s)",
                hint,
            ) from exc
        raise VmError(
            f"{_running(step, exc.stage)} did not finish"
            + (f" (while {STAGES[exc.stage]})" if exc.stage in STAGES else "")
            + f" within the {exc.seconds:g} s timeout: stopped after {exc.ran:.1f} s "
            "(the build VM's boot included)",
            hint,
        ) from exc


def _running(step: str, stage: str | None) -> str:
    """What ran out of time: the script stage the guest was in (configure = true's
    maintainer scripts, not "runAsRoot"), else the step as a whole."""
    return SCRIPT_STAGES.get(stage or "", step) if step == RUN_AS_ROOT else step


def _content(step: RootStep, tree: Tree, workdir: Path, mtime: int) -> tuple[Path, str | None]:
    """copyToRoot as a plain tar owned by uid/gid, and its diff_id (None when empty)."""
    content = workdir / "content.tar"
    with open(content, "wb") as f:
        packed = layer_writer.pack(
            tree, f, compression="none", mtime=mtime, owner=layer_writer.Owner(step.uid, step.gid)
        )
    return content, packed.diff_id if tree.entries else None


def step_inputs(
    step: RootStep, base: BaseImage | None, content_id: str | None, mtime: int
) -> dict[str, object]:
    """Everything the new layer depends on (see :mod:`vmbuild.vm.stepkey`)."""
    inputs: dict[str, object] = {
        "step": "runAsRoot",
        "base": [layer.diff_id for layer in (base.layers if base else [])],
        "content": content_id,
        "script": step.script,
        "extraCommands": step.extra_commands,
        "uid": step.uid,
        "gid": step.gid,
        "mtime": mtime,
        "guest": guest_identity(),
    }
    if step.configure:  # the .deb files are named by their SHA256 (debdisk)
        inputs["configure"] = step.configure
        inputs["debs"] = [deb.name for deb in step.debs]
    return inputs


def _as_layer(plain: Path, diff_id: str, workdir: Path, compression: Compression) -> Layer:
    """The image layer of the plain tar ``plain``, compressed as asked."""
    if compression == "none":
        return Layer(diff_id, BlobRef.whole(plain), compression, diff_id)
    blob = workdir / "layer-vm"
    with open(plain, "rb") as src, open(blob, "wb") as f:
        hashed = HashingWriter(f)
        with compressor(cast(BinaryIO, hashed), compression) as z:
            shutil.copyfileobj(src, z, 1 << 20)
            z.flush()  # as the layer writer does at its end: the same bytes (zstd flushes a block)
    return Layer(diff_id, BlobRef.whole(blob), compression, hashed.digest)


def run_as_root(
    step: RootStep,
    base: BaseImage | None,
    tree: Tree,
    workdir: Path,
    compression: Compression,
    mtime: int,
) -> Layer:
    """The new layer: copyToRoot, then runAsRoot (as root, in the VM), then extraCommands.

    An unchanged step (same inputs, :func:`step_inputs`) comes from the step cache
    without booting the VM.
    """
    content, content_id = _content(step, tree, workdir, mtime)
    key = stepcache.step_key(step_inputs(step, base, content_id, mtime))
    hit = stepcache.lookup(key)
    if hit is not None:
        progress.current().note(f"{step.name}: unchanged, its layer comes from the step cache")
        return _as_layer(hit.layer, hit.diff_id, workdir, compression)
    plain = workdir / "layer-vm.tar"
    diff_id = _build_in_vm(step, base, content, content_id is not None, workdir, plain, mtime)
    stored = stepcache.publish(key, plain, diff_id, {"step": step.name})
    return _as_layer(stored.layer, stored.diff_id, workdir, compression)


def _build_in_vm(
    step: RootStep,
    base: BaseImage | None,
    content: Path,
    has_content: bool,
    workdir: Path,
    plain: Path,
    mtime: int,
) -> str:
    """Run the step in a build VM; write the new layer (plain tar) to ``plain``."""
    from vmbuild.oci.overlay import from_overlay
    from vmbuild.vm import debdisk
    from vmbuild.vm.qemu import Disk

    tar = workdir / "debs.tar"
    debs = [Disk(debdisk.debs_tar(step.debs, tar), readonly=True)] if step.debs else []
    lower = lower_disks(base, workdir, 2 + len(debs))
    # the .deb files are unpacked on the scratch disk, their contents into the new layer
    unpacked = sum(4 * deb.stat().st_size for deb in step.debs)
    needed = check_disk(2 * content.stat().st_size + unpacked, step.disk_size)
    out = _sparse(workdir / "out.img", step.disk_size)
    disks = [Disk(out), Disk(content, readonly=True), *debs, *lower]
    report = progress.current()
    with (
        _bounded(step.name) as timeout,
        _booted(step.memory, step.disk_size, disks, timeout) as vm,
        report.stage(f"running {step.name}", streams=True),
    ):
        files = {
            RUN_AS_ROOT: step.script.encode(),
            EXTRA_COMMANDS: step.extra_commands.encode(),
            debdisk.CONFIGURE: step.configure.encode(),
        }
        _run_step(
            vm,
            "build",
            3 + len(debs),
            len(lower),
            step.disk_size,
            step.memory,
            needed,
            files,
            has_content=has_content,
            has_debs=bool(debs),
        )
    tar.unlink(missing_ok=True)
    with report.stage(PACKING), open(plain, "wb") as f:
        packed = from_overlay(out, f, compression="none", mtime=mtime)
    out.unlink()
    return packed.diff_id


def export_in_vm(
    step: RootStep, base: BaseImage, workdir: Path, sink: BinaryIO, mtime: int
) -> Packed:
    """The merged filesystem of ``base``, flattened by the VM's overlay, into ``sink``."""
    from vmbuild.oci.retar import retar
    from vmbuild.vm.qemu import Disk

    lower = lower_disks(base, workdir, 1)
    # the merged tree is packed onto the output disk: about the size of the lowers' data
    needed = check_disk(sum(d.path.stat().st_blocks * 512 for d in lower), step.disk_size)
    out = _sparse(workdir / "out.img", step.disk_size)
    report = progress.current()
    with (
        _bounded(step.name) as timeout,
        _booted(step.memory, step.disk_size, [Disk(out), *lower], timeout) as vm,
        report.stage(MERGING),
    ):
        _run_step(vm, "export", 2, len(lower), step.disk_size, step.memory, needed)
    with report.stage(PACKING_EXPORT):
        return retar(out, sink, compression="none", mtime=mtime, where="the exported tree")
