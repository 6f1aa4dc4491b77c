"""The build VM's files on the host: its temporary directory and its scratch disk.

Each VM gets a ``vmbuild-vm-*`` directory under the temporary directory (the scratch
image, QEMU's log, the owner's PID). The Machine removes it on exit; if the controller
was killed outright, the next VM removes it (:func:`sweep_stale`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vmbuild.run import run, which

TMP_PREFIX = "vmbuild-vm-"


def make_scratch(path: Path, size_mib: int) -> None:
    """A sparse ``size_mib`` MiB file holding an empty ext4 owned by root (no root needed)."""
    mkfs = which("mkfs.ext4", "e2fsprogs")
    with path.open("wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    run(
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
        what="mkfs.ext4",
    )


def sweep_stale() -> None:
    """Remove temporary dirs of controllers that were killed outright (SIGKILL).

    Their QEMU stops by itself (the guest ends when its SSH connection goes away).
    """
    for d in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            pid = int((d / "pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue
