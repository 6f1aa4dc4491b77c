"""configure = true in the build VM: the ``.deb`` files the image's dpkg installs come in
as a read-only disk holding a plain tar of them (``<sha256>.deb``, already verified on
the host), which ``guest/root-step`` unpacks on the scratch disk and mounts read-only at
``/.vmbuild/step/debs`` in the chroot. dpkg unpacks the packages' contents itself, in
the guest. When installing them fails, :func:`failure` says which package's script.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

# dpkg's own words (LC_ALL=C) when a maintainer script fails, and the configure
# script's for a preinst of the host-unpacked set (builders.debcontent.PREINST_FAILED)
_DPKG = re.compile(
    r"(?:new|installed|old) (\S+) package (pre-installation|post-installation|pre-removal|"
    r"post-removal) script subprocess returned error exit status (\d+)"
)
_OURS = re.compile(r"vmbuild-preinst-failed (\S+) (\d+)")
_SCRIPTS = {
    "pre-installation": "preinst",
    "post-installation": "postinst",
    "pre-removal": "prerm",
    "post-removal": "postrm",
}
CONFIGURE = "configure"  # the guest's stage (guest/root-step)
HINT = (
    "the package's maintainer script failed in the build VM (offline, noninteractive); "
    "rerun with --debug for dpkg's output, or build with configure = false"
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


def failure(output: str, status: int) -> str:
    """The error's message for a failed configure stage: the package and the script
    that failed, when dpkg's output (or the configure script's) names them."""
    found = _OURS.search(output)
    if found:
        return f"configure = true: the preinst of {found[1]} failed with status {found[2]}"
    hit = _DPKG.search(output)  # the first failure: the others follow from it
    if hit is not None:
        return f"configure = true: the {_SCRIPTS[hit[2]]} of {hit[1]} failed with status {hit[3]}"
    return f"configure = true: installing the Debian packages failed with status {status}"
