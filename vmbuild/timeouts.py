"""How long each build VM may run: ``vmbuild build --timeout S`` or ``VMBUILD_TIMEOUT``.

The limit bounds each build VM (runAsRoot, exportImage's merge in the VM) from QEMU's
start: its boot and its step together. The command line checks the value before any
work and sets it for the build with :func:`limit`; the builders ask :func:`step_timeout`,
which falls back to the environment variable (so the Python API honours it too). The
default is :data:`DEFAULT`, so that a step that never returns (a postinst waiting for
input, a script's endless loop) cannot keep a build, or a CI job, waiting forever;
0 asks for no limit.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from vmbuild.errors import SpecError

ENV = "VMBUILD_TIMEOUT"
DEFAULT = 3600.0  # seconds: an hour, far beyond any step that makes progress


@dataclass(frozen=True)
class _Limit:
    seconds: float | None  # None: no limit


_given: ContextVar[_Limit | None] = ContextVar("vmbuild_timeout", default=None)


def parse(text: str, where: str) -> float | None:
    """``text`` as a positive, finite number of seconds, or 0 for no limit (None);
    SpecError naming ``where``."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if value == 0:
        return None
    if not math.isfinite(value) or value < 0:
        raise SpecError(
            f"{where} {text!r} is not a positive number of seconds, or 0 for no limit",
            f"give the seconds a build VM may run, e.g. {where}{'=' if where == ENV else ' '}600",
        )
    return value


def from_env() -> float | None:
    """VMBUILD_TIMEOUT, checked; :data:`DEFAULT` when it is unset or empty, None for 0."""
    text = os.environ.get(ENV, "")
    return parse(text, ENV) if text.strip() else DEFAULT


def step_timeout() -> float | None:
    """The limit for a build VM (None: none): the one :func:`limit` set, else
    VMBUILD_TIMEOUT's, else :data:`DEFAULT`."""
    given = _given.get()
    return given.seconds if given is not None else from_env()


@contextlib.contextmanager
def limit(seconds: float | None) -> Iterator[None]:
    """Bound every build VM started in the block by ``seconds`` (None: no limit)."""
    token = _given.set(_Limit(seconds))
    try:
        yield
    finally:
        _given.reset(token)
