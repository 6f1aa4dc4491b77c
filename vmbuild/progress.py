"""Progress of a build's long stages on stderr, and the timings of every stage.

The command line sets a :class:`Report` for the build with :func:`reporting`; the code
doing the work asks :func:`current` and wraps each long stage in ``stage(name)``. When
stderr is not a terminal, each stage prints one line when it ends, with its time
(``vmbuild> booting the build VM (2.1 s)``); on a terminal the line is live (redrawn in
place with the stage's details) and stays once the stage ends. A stage that fails prints
nothing (the error says what happened). A stage that streams
output of its own (runAsRoot's script) prints its line when it starts instead. At the end
:meth:`Report.summary` prints the total and the build VM's share; ``--timings`` adds
the breakdown. Lines start with ``vmbuild>`` (errors keep ``vmbuild: error:``).
The Python API's default report is silent; ``-q`` makes the command line's silent too.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TextIO

PREFIX = "vmbuild> "


def human(n: float, binary: bool = False) -> str:
    """``n`` bytes for people: ``1.5 MB`` (powers of 1000), or with ``binary`` ``1.5 MiB``
    (powers of 1024, as the cache's sizes are given)."""
    step, units = (1024, ("B", "KiB", "MiB", "GiB")) if binary else (1000, ("B", "kB", "MB", "GB"))
    for unit in units[:-1]:
        if n < step:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= step
    return f"{n:.1f} {units[-1]}"


class Stage:
    """One running stage: :meth:`detail` redraws its live line (terminal only)."""

    def __init__(self, report: Report, name: str):
        self.report = report
        self.name = name
        self.text = ""
        self.started = time.monotonic()

    def detail(self, text: str) -> None:
        self.text = text
        self.report.draw(self)


class Report:
    """Where stage lines go. ``quiet``: none; ``timings``: the breakdown at the end."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        timings: bool = False,
        live: bool | None = None,
    ):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.timings = timings
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self.took: dict[str, float] = {}
        self.started = time.monotonic()
        self._drawn = False

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        self.stream.write(text)
        self.stream.flush()

    def draw(self, stage: Stage) -> None:
        if self.live:
            took = time.monotonic() - stage.started
            self._write(f"{PREFIX}{stage.name}{': ' + stage.text if stage.text else ''} "
                        f"({took:.1f} s)")  # fmt: skip
            self._drawn = True

    @contextlib.contextmanager
    def stage(self, name: str, *, streams: bool = False) -> Iterator[Stage]:
        """Time the block as stage ``name``; ``streams``: the block writes to stderr."""
        st = Stage(self, name)
        if streams:
            self._write(f"{PREFIX}{name} ...\n")
        else:
            self.draw(st)
        try:
            yield st
        except BaseException:
            if self._drawn:  # the error's line replaces the live one
                self._write("")
            raise
        took = time.monotonic() - st.started
        self.took[name] = self.took.get(name, 0.0) + took
        detail = f": {st.text}" if st.text else ""
        self._write(f"{PREFIX}{name}{detail} ({took:.1f} s)\n")

    @property
    def active(self) -> bool:
        """Whether a stage has run (a build that booted no VM prints no summary)."""
        return bool(self.took)

    def note(self, text: str) -> None:
        self._write(f"{PREFIX}{text}\n")

    def summary(self, what: str, vm_stages: tuple[str, ...] = ()) -> None:
        """The one-line total (with the build VM's share), and the breakdown if asked."""
        if not self.took and not self.timings:
            return
        total = time.monotonic() - self.started
        vm = sum(self.took.get(s, 0.0) for s in vm_stages)
        share = f" (the build VM {vm:.1f} s of it)" if vm else ""
        if self.took:
            self._write(f"{PREFIX}{what} in {total:.1f} s{share}\n")
        if self.timings:  # asked for: printed even with -q
            parts = " ".join(f"{k.replace(' ', '_')}={v:.3f}s" for k, v in self.took.items())
            self.stream.write(f"{PREFIX}timings: {parts} total={total:.3f}s\n")
            self.stream.flush()


_current: ContextVar[Report | None] = ContextVar("vmbuild_progress", default=None)


def current() -> Report:
    """The build's report; a silent one when none is set (the Python API)."""
    report = _current.get()
    if report is None:
        report = Report(quiet=True)
        _current.set(report)
    return report


@contextlib.contextmanager
def reporting(report: Report) -> Iterator[Report]:
    token = _current.set(report)
    try:
        yield report
    finally:
        _current.reset(token)
