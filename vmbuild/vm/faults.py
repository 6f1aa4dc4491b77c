"""Telling a failed command from a failed VM: the guest's fault note, parsed.

When a command fails, the guest's ``vmbuild-exec`` leaves ``/run/vmbuild/fault``:
``key=value`` lines with the status, how many processes the OOM killer took since boot
(the caller passes how many it already knew of) and the last victim, and the scratch
disk's free and total blocks. A failed VM is a :class:`VmTimeout`, a
:class:`HostDiskError` (QEMU reported a host I/O error on a disk image), a
:class:`GuestOutOfMemory` (the note's OOM kills, or the kernel's OOM report on the
console when the connection died), a :class:`GuestDiskCorrupt` (the kernel's report
of a corrupt file system on the console, which also makes free blocks vanish), a
:class:`GuestDiskFull` (the note's free blocks, or the root step's status record) or
another :class:`~vmbuild.errors.VmError`; callers tell them apart by type.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild.errors import VmError

if TYPE_CHECKING:
    from vmbuild.vm.console import Console
    from vmbuild.vm.qmp import Monitor

log = logging.getLogger("vmbuild")

# Below this much free space (or 1/200 of the disk, if more) the scratch disk counts as full.
FULL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Faults:
    oom: str | None = None  # what the OOM killer did, if it did anything new
    disk_full: bool = False
    oom_total: int = 0  # OOM kills since boot


def parse(note: bytes, oom_seen: int = 0) -> Faults:
    fields: dict[str, str] = {}
    for line in note.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    oom = None
    try:
        kills = int(fields.get("oom_kills", "0") or "0")
    except ValueError:
        kills = 0
    if kills > oom_seen:
        victim = fields.get("oom_victim", "").removeprefix("Killed ").strip() or "a process"
        oom = f"the kernel's OOM killer stopped {victim}"
    disk_full = False
    scratch = fields.get("scratch", "").split()
    if len(scratch) == 3 and all(s.isdigit() for s in scratch):
        avail, total, bsize = (int(s) for s in scratch)
        disk_full = avail * bsize < FULL_BYTES or avail * 200 < total
    return Faults(oom, disk_full, kills)


def dead(when: str, status: int | None, console: Console, qemu_log: Path | None) -> VmError:
    """QEMU ended by itself: a guest kernel panic, or QEMU's own last word."""
    panic = console.panic()
    if panic:
        return VmError(f"the guest kernel panicked {when}: {panic}", console.hint())
    last = ""
    if qemu_log is not None and qemu_log.exists():
        lines = qemu_log.read_text(errors="replace").strip().splitlines()
        last = ": " + re.sub(r"\s+", " ", lines[-1]) if lines else ""
    return VmError(f"QEMU exited {when} (status {status}){last}", console.hint())


class VmTimeout(VmError):
    """The Machine's (or a command's) time limit expired; the VM was stopped.

    ``seconds`` is the limit, ``ran`` how long the VM had run (from QEMU's start) when it
    was stopped, ``phase`` "boot" or "command", ``stage`` the root step's stage the guest
    had announced last (``guest/root-step``: setup, configure, runAsRoot, ...), if any.
    """

    def __init__(
        self,
        message: str,
        hint: str,
        *,
        seconds: float,
        ran: float,
        phase: str,
        stage: str | None = None,
    ):
        super().__init__(message, hint)
        self.seconds = seconds
        self.ran = ran
        self.phase = phase
        self.stage = stage


class HostDiskError(VmError):
    """QEMU could not read or write a disk image on the host (a full TMPDIR, say)."""


class GuestOutOfMemory(VmError):
    """The guest's kernel killed a process for memory (``memory_mib``: the VM's RAM)."""

    def __init__(self, message: str, hint: str, *, memory_mib: int):
        super().__init__(message, hint)
        self.memory_mib = memory_mib


class GuestDiskFull(VmError):
    """A disk in the build VM filled up (``size_mib``: its size; the VM was stopped)."""

    def __init__(self, message: str, hint: str, *, size_mib: int):
        super().__init__(message, hint)
        self.size_mib = size_mib


class GuestDiskCorrupt(VmError):
    """The guest's kernel found a file system on one of the VM's disks corrupt (ext4's
    "Structure needs cleaning"): not a full disk, and no diskSize cures it."""


DEVICE = re.compile(r"\(device ([a-z0-9]+)\)")


def corrupt(report: str) -> GuestDiskCorrupt:
    """The error for the kernel's ``report`` (an ``EXT4-fs error (device vdX): ...`` line)."""
    found = DEVICE.search(report)
    disk = f" /dev/{found.group(1)}" if found else ""
    return GuestDiskCorrupt(
        f"the file system on the build VM's disk{disk} is corrupt (Structure needs "
        f"cleaning), which is not a full disk: {report}",
        "something in the step wrote to the disk device itself (the VM's /dev/vd* are "
        "visible to its scripts) or damaged it; keep scripts off /dev/vd*, then rerun "
        "(--debug shows the guest's console)",
    )


class HostWatch:
    """QEMU's host I/O error events for disk images ``images`` (node ``d{i}``: images[i]).

    :meth:`look` asks the monitor at most every ``every`` seconds (it is called from
    poll loops); the first error is kept.
    """

    def __init__(self, images: Sequence[Path], every: float = 0.25) -> None:
        self.images = list(images)
        self.every = every
        self.error: HostDiskError | None = None
        self._next = 0.0

    def look(self, monitor: Monitor | None, now: bool = False) -> HostDiskError | None:
        t = time.monotonic()
        if monitor is not None and self.error is None and (now or t >= self._next):
            self._next = t + self.every
            events = monitor.io_errors()
            if events:
                log.debug("vmbuild: QEMU reported host I/O errors: %s", events)
                self.error = host_disk_error(events[0], self.images)
        return self.error


def where_is(path: Path) -> str:
    """The directory a user knows ``path`` by: TMPDIR, the cache, or its own directory."""
    from vmbuild.cache import cache_dir

    for root, name in ((Path(tempfile.gettempdir()), "TMPDIR"), (cache_dir(), "the cache")):
        with contextlib.suppress(OSError, ValueError):
            if path.resolve().is_relative_to(root.resolve()):
                return f"{root} ({name})"
    return str(path.parent)


NO_SPACE = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def host_disk_error(event: dict[str, Any], disks: Sequence[Path]) -> HostDiskError:
    """The error for a BLOCK_IO_ERROR event on disk node ``d{i}`` (``disks[i]``)."""
    node = str(event.get("node-name") or event.get("device") or "")
    index = int(node[1:]) if node[:1] == "d" and node[1:].isdigit() else -1
    path = disks[index] if 0 <= index < len(disks) else None
    image = f"the build VM's disk image {path.name}" if path else "a build VM disk image"
    reason = str(event.get("reason") or "an I/O error")
    # "nospace" comes only with werror=stop/enospc; with "report" the reason tells.
    if event.get("nospace") or reason in NO_SPACE:
        place = where_is(path) if path else "the temporary directory (TMPDIR)"
        return HostDiskError(
            f"the host's disk is full: no space left in {place} for {image}",
            "free space there, or point TMPDIR at a file system with room "
            "(the build VM's disks take up to diskSize MiB each)",
        )
    op = str(event.get("operation") or "access")
    return HostDiskError(
        f"the host could not {op} {image}" + (f" in {path.parent}" if path else "") + f": {reason}",
        "check the host file system (dmesg); the VM was stopped",
    )
