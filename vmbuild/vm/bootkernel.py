"""Which kernel the build VM boots: ``--kernel``, vmbuild's own, or the fallback.

vmbuild's own kernel (:mod:`.kernel`) is used when it is in the cache or can be built
here; otherwise Debian's cloud kernel (:mod:`.cloudkernel`). Both modules are below this
one: the fallback reuses the own kernel's list of build tools for its error message.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmbuild.errors import ToolMissing, VmbuildError
from vmbuild.vm import kernel
from vmbuild.vm.kernel import Kernel


def resolve(user_kernel: Path | None = None, *, allow_build: bool = True) -> Kernel:
    """The kernel to boot: ``--kernel``, the cached build, a new build, or the fallback."""
    if user_kernel is not None:
        if not user_kernel.is_file():
            raise VmbuildError(
                f"kernel {user_kernel} does not exist",
                "give --kernel the path of a bzImage or vmlinuz",
            )
        return Kernel(user_kernel, "user")
    from vmbuild.vm import cloudkernel  # only when it is used: it loads pyelftools

    if os.environ.get("VMBUILD_GUEST_KERNEL") == "cloud":
        return cloudkernel.ensure()
    built = kernel.cached_build()
    if built:
        return Kernel(built, "built")
    lacking = kernel.missing_build_tools()
    if allow_build and not lacking:
        return Kernel(kernel.build(), "built")
    try:
        return cloudkernel.ensure()
    except VmbuildError as exc:
        raise ToolMissing(
            "no guest kernel: cannot build one (missing "
            + ", ".join(lacking)
            + f") and the fallback, Debian's cloud kernel, failed: {exc.message}",
            "install the kernel build tools: apt-get install " + " ".join(lacking),
        ) from exc
