"""ELF headers of host files remembered between builds, so a closure is resolved without
reading every file's headers again.

An entry is trusted only while the file's ``stat`` (device, inode, size, mtime and
ctime in nanoseconds) is what it was when the headers were read, and a file changed in
the last few seconds is not remembered (as for layer diff_ids,
:mod:`vmbuild.streaming.idcache`). One cache file per set of closure roots holds the
entries the last build of that set used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from vmbuild import cache
from vmbuild.units.elf import ElfInfo, read_elf

KIND = "elf-info-v1"


def _encode(info: ElfInfo | None) -> Any:
    if info is None:
        return None
    return [info.elfclass, info.machine, info.interp, info.needed, info.rpath, info.runpath]


def _decode(raw: Any) -> ElfInfo | None:
    if raw is None:
        return None
    elfclass, machine, interp, needed, rpath, runpath = raw
    return ElfInfo(int(elfclass), int(machine), interp, tuple(needed), tuple(rpath), tuple(runpath))


class ElfCache:
    """:func:`read_elf`, answered from the cache file for ``roots`` where it can be."""

    def __init__(self, roots: Iterable[str]):
        self.key = cache.key([KIND, *roots])
        self.old: dict[str, Any] = {}
        self.new: dict[str, Any] = {}
        loaded = cache.read_json(cache.entry(KIND, self.key))
        if isinstance(loaded, dict):
            self.old = loaded

    def read(self, path: str) -> ElfInfo | None:
        try:
            st = os.stat(path)
        except OSError:
            return read_elf(path)  # which raises the error that fits
        sig = ":".join(map(str, cache.file_identity(st)))
        hit = self.old.get(path)
        info: ElfInfo | None
        try:
            info = _decode(hit[1]) if isinstance(hit, list) and hit[0] == sig else read_elf(path)
        except (ValueError, TypeError, IndexError):
            info = read_elf(path)
        if cache.settled(st, time.time_ns()):
            self.new[path] = [sig, _encode(info)]
        return info

    def save(self) -> None:
        """Keep the entries this build used (failures are ignored: it is only a cache)."""
        if self.new == self.old:
            return
        cache.write_json(cache.entry(KIND, self.key), self.new)
