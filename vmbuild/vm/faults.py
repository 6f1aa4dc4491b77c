"""Telling a failed command from a failed VM: the guest's fault note, parsed.

When a command fails, the guest's ``vmbuild-exec`` leaves ``/run/vmbuild/fault``:
``key=value`` lines with the status, how many processes the OOM killer took since boot
(the caller passes how many it already knew of) and the last victim, and the scratch
disk's free and total blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

ENOSPC = b"No space left on device"
# Below this much free space the scratch disk counts as full.
FULL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Faults:
    oom: str | None = None  # what the OOM killer did, if it did anything new
    disk_full: bool = False
    oom_total: int = 0  # OOM kills since boot


def parse(note: bytes, stderr_tail: bytes = b"", oom_seen: int = 0) -> Faults:
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
        free = avail * bsize
        disk_full = free < FULL_BYTES or (
            total > 0 and avail * 200 < total and ENOSPC in stderr_tail
        )
    return Faults(oom, disk_full, kills)
