"""How long each build VM may run: ``vmbuild build --timeout S`` or ``VMBUILD_TIMEOUT``.

The limit bounds each build VM (runAsRoot, exportImage's merge in the VM) from QEMU's
start: its boot and its step together. The command line checks the value before any
work and sets it for the build with :func:`limit`; the builders ask :func:`step_timeout`,
which falls back to the environment variable (so the Python API honours it too). No
limit is the default.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar

from vmbuild.errors import SpecError

ENV = "VMBUILD_TIMEOUT"
_given: ContextVar[float | None] = ContextVar("vmbuild_timeout", default=None)


def parse(text: str, where: str) -> float:
    """``text`` as a positive, finite number of seconds; SpecError naming ``where``."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise SpecError(
            f"{where} {text!r} is not a positive number of seconds",
            f"give the seconds a build VM may run, e.g. {where}{'=' if where == ENV else ' '}600",
        )
    return value


def from_env() -> float | None:
    """VMBUILD_TIMEOUT, checked; None when it is unset or empty."""
    text = os.environ.get(ENV, "")
    return parse(text, ENV) if text.strip() else None


def step_timeout() -> float | None:
    """The limit for a build VM: the one :func:`limit` set, else VMBUILD_TIMEOUT."""
    given = _given.get()
    return given if given is not None else from_env()


@contextlib.contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Bound every build VM started in the block by ``seconds`` (None: VMBUILD_TIMEOUT)."""
    token = _given.set(seconds)
    try:
        yield
    finally:
        _given.reset(token)
