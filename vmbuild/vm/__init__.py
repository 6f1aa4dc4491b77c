"""The build VM: a throwaway QEMU guest that runs commands as root.

``Machine`` boots on ``__enter__`` and always tears down on ``__exit__``; ``Disk`` is an
extra virtio-blk disk (``/dev/vdb``, ``/dev/vdc``, ... in order). See
:mod:`vmbuild.vm.machine`.
"""

from vmbuild.vm.machine import Machine
from vmbuild.vm.qemu import Disk

__all__ = ["Disk", "Machine"]
