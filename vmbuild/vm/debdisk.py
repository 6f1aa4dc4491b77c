"""configure = true in the build VM: the ``.deb`` files the image's dpkg installs come in
as a read-only disk holding a plain tar of them (``<sha256>.deb``, already verified on
the host), which ``guest/root-step`` unpacks on the scratch disk and mounts read-only at
``/.vmbuild/step/debs`` in the chroot. dpkg unpacks the packages' contents itself, in
the guest. When installing them fails, the guest's status record says which package's
script (:func:`failure`).
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

CONFIGURE = "configure"  # the guest's stage (guest/root-step)
HINT = (
    "the package's maintainer script failed in the build VM (offline, noninteractive); "
    "rerun with --debug for dpkg's output, or build with configure = false"
)
# what the record says failed: PACKAGE SCRIPT STATUS (the guest's words: checked)
_SAID = (
    re.compile(r"[a-z0-9][a-z0-9+.:-]*"),
    re.compile(r"(pre|post)(inst|rm)"),
    re.compile(r"\d{1,3}"),
)


def debs_tar(debs: Sequence[Path], out: Path) -> Path:
    """A plain tar of ``debs`` by their names (owner 0, mtime 0): the disk's image."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for deb in debs:
            info = tarfile.TarInfo(deb.name)
            info.size, info.mode = deb.stat().st_size, 0o444
            with open(deb, "rb") as f:
                tar.addfile(info, f)
    return out


def failure(said: Sequence[str], status: int) -> str:
    """The error's message for a failed configure stage: the package and the script
    that failed, when the guest's status record names them (``said``)."""
    if len(said) == 3 and all(r.fullmatch(w) for r, w in zip(_SAID, said, strict=True)):
        package, script, code = said
        return f"configure = true: the {script} of {package} failed with status {code}"
    return f"configure = true: installing the Debian packages failed with status {status}"
