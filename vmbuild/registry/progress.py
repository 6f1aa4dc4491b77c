"""Transfer progress on stderr: live bars on a terminal, else one line per finished blob."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from vmbuild.progress import human

BAR = 24


class Progress:
    """Bars keyed by name; ``live`` (default: stream is a tty) redraws them in place."""

    def __init__(self, verb: str, stream: TextIO | None = None, live: bool | None = None):
        self.verb = verb
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._lock = threading.Lock()
        self._bars: dict[str, list[int]] = {}
        self._drawn = 0
        self._last = 0.0
        self._start: dict[str, float] = {}

    def start(self, name: str, total: int) -> None:
        with self._lock:
            self._bars[name] = [0, total]
            self._start[name] = time.monotonic()
            self._draw(force=True)

    def update(self, name: str, n: int) -> None:
        with self._lock:
            bar = self._bars.get(name)
            if bar is not None:
                bar[0] += n
                self._draw()

    def rewind(self, name: str, done: int) -> None:
        with self._lock:
            if name in self._bars:
                self._bars[name][0] = done

    def done(self, name: str, note: str = "") -> None:
        with self._lock:
            bar = self._bars.pop(name, [0, 0])
            took = time.monotonic() - self._start.pop(name, time.monotonic())
            line = f"{self.verb} {name} {human(bar[1])}{note} in {took:.1f} s"
            if self.live:
                self._clear()
                self.stream.write(line + "\n")
                self._draw(force=True)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def drop(self, name: str) -> None:
        with self._lock:
            self._bars.pop(name, None)
            self._start.pop(name, None)
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            if self.live:
                self._clear()
            self._bars.clear()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self._clear()
        for name, (got, total) in self._bars.items():
            frac = got / total if total else 1.0
            fill = int(frac * BAR)
            bar = "#" * fill + "-" * (BAR - fill)
            self.stream.write(f"{name} [{bar}] {human(got)}/{human(total)}\n")
        self._drawn = len(self._bars)
        self.stream.flush()


class Silent(Progress):
    """No output at all (prefetch --quiet, tests)."""

    def __init__(self) -> None:
        super().__init__("", live=False)

    def done(self, name: str, note: str = "") -> None:
        with self._lock:
            self._bars.pop(name, None)
