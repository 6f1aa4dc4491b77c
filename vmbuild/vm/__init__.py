"""The build VM: a throwaway QEMU guest that runs commands as root.

``Machine`` boots on ``__enter__`` and always tears down on ``__exit__``; ``Disk`` is an
extra virtio-blk disk (``/dev/vdb``, ``/dev/vdc``, ... in order). See
:mod:`vmbuild.vm.machine`. Both are loaded when first named: importing a light module
of this package (``stepkey``, to look a step up in the step cache) loads no QEMU code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmbuild.vm.machine import Machine
    from vmbuild.vm.qemu import Disk

__all__ = ["Disk", "Machine"]
_LAZY = {"Machine": "vmbuild.vm.machine", "Disk": "vmbuild.vm.qemu"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
