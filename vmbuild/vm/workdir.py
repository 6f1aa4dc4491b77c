"""The build VM's files on the host: its temporary directory and its scratch disk.

Each VM gets a ``vmbuild-vm-*`` directory under the temporary directory (the scratch
image, QEMU's log), locked by its owner (:class:`vmbuild.tempdirs.OwnedDir`). The Machine
removes it on exit; if the controller was killed outright, the next VM or build removes
it (:func:`vmbuild.tempdirs.sweep_stale`).
"""

from __future__ import annotations

import os
from pathlib import Path

from vmbuild.errors import VmError, last_lines
from vmbuild.run import run, which
from vmbuild.tempdirs import sweep_stale
from vmbuild.vm.faults import HostDiskError, where_is

__all__ = ["TMP_PREFIX", "make_scratch", "sweep_stale"]

TMP_PREFIX = "vmbuild-vm-"
# a failed mkfs with less room than this left on the host counts as a full host disk
MKFS_ROOM = 32 * 1024 * 1024


def make_scratch(path: Path, size_mib: int) -> None:
    """A sparse ``size_mib`` MiB file holding an empty ext4 owned by root (no root needed)."""
    mkfs = which("mkfs.ext4", "e2fsprogs")
    with path.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    made = run(
        [
            mkfs,
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-L",
            "scratch",
            "-E",
            "root_owner=0:0,lazy_itable_init=1",
            path,
        ],
        capture=True,
        check=False,
    )
    if made.returncode == 0:
        return
    if _nearly_full(path.parent):
        raise HostDiskError(
            f"the host's disk is full: no space left in {where_is(path)} for the build VM's "
            "scratch disk",
            "free space there, or point TMPDIR at a file system with room",
        )
    tail = " / ".join(last_lines(made.stderr.decode(errors="replace"), 3))
    raise VmError(f"mkfs.ext4 of the build VM's scratch disk failed: {tail}", "rerun with --debug")


def _nearly_full(directory: Path) -> bool:
    """Whether ``directory``'s file system has too little room left for mkfs's metadata."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < MKFS_ROOM
