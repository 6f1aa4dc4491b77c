"""What a root step's result depends on, for the step cache (:mod:`vmbuild.stepcache`).

The key covers the step's own inputs (the base layers' diff_ids, copyToRoot's content as
its layer's diff_id, the scripts, uid/gid, which step it is) and the guest that runs it:
the kernel recipe (vmbuild's config fragment and build recipe), the guest's scripts
(init, root-step, shadowSetup...) and the identities of the host tools copied into the
initramfs (with dpkg's status file, which any package change touches). The VM's memory
and disk size are left out: they decide whether a step fits, never what it makes.
"""

from __future__ import annotations

import os

from vmbuild import cache
from vmbuild.resources import guest_file, shadow_setup
from vmbuild.vm import initramfs, kernel

STEP_FILES = ("root-step",)


def guest_identity() -> str:
    """A key over the guest: kernel recipe, guest scripts and the initramfs's tools."""
    parts: list[bytes | str] = [kernel.RECIPE, kernel.fragment(), initramfs.FORMAT]
    for name in (*initramfs.GUEST_FILES, *STEP_FILES):
        parts.append(guest_file(name))
    parts.append(shadow_setup())
    tools = (*initramfs.TOOLS, *initramfs.OPTIONAL_TOOLS, *initramfs.HOST_DATA)
    for path in (*(p for p, _ in tools), initramfs.DPKG_STATUS):
        try:
            st = os.stat(path)
            # Not cache.file_identity: this key is shared through remote caches, and a
            # packaged file's size and mtime (dpkg sets it from the package) are the same
            # on every runner with the same package, its inode and ctime are not.
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{path}:-")
    return cache.key(parts)
