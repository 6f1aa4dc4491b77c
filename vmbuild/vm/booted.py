"""Which kernel and initramfs the build VMs of a build booted (for its provenance).

:func:`recording` collects, for the code that runs inside it, every (kernel, initramfs)
pair a :class:`vmbuild.vm.machine.Machine` boots; outside it nothing is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

_BOOTS: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("vmbuild_boots", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[Path, Path]]]:
    boots: list[tuple[Path, Path]] = []
    token = _BOOTS.set(boots)
    try:
        yield boots
    finally:
        _BOOTS.reset(token)


def note(kernel: Path, initrd: Path) -> None:
    boots = _BOOTS.get()
    if boots is not None and (kernel, initrd) not in boots:
        boots.append((kernel, initrd))
