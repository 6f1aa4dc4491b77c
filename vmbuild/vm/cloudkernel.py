"""Fallback guest kernel: Debian's cloud kernel (placeholder until implemented)."""

from __future__ import annotations

from vmbuild.errors import ToolMissing
from vmbuild.vm.kernel import Kernel, missing_build_tools


def ensure() -> Kernel:
    lacking = missing_build_tools()
    raise ToolMissing(
        "no guest kernel: cannot build one (missing " + ", ".join(lacking) + ")",
        "install them: apt-get install " + " ".join(lacking),
    )
