"""What the dynamic loader needs to run an ELF file, and where it finds libraries.

:func:`read_elf` gives a file's class, machine, interpreter (``PT_INTERP``), needed
sonames (``DT_NEEDED``) and search paths (``DT_RPATH``, ``DT_RUNPATH``, with ``$ORIGIN``,
``$LIB`` and ``$PLATFORM`` expanded), as :mod:`vmbuild.units.elfheaders` reads them.
:class:`LibrarySearch` finds a soname the way glibc's loader does: a name with a slash
as is, then ``DT_RPATH`` (when there is no ``DT_RUNPATH``), ``DT_RUNPATH``, the host's
ld.so cache (``/etc/ld.so.cache``), and the default directories, skipping candidates of
another class or machine. ``LD_LIBRARY_PATH`` is ignored: it belongs to the host's
shell, not to the image.
"""

from __future__ import annotations

import os
import platform
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vmbuild.errors import SpecError
from vmbuild.units.elfheaders import BadElf, read_headers

LD_SO_CACHE = Path("/etc/ld.so.cache")
CACHE_MAGIC = b"glibc-ld.so.cache1.1"
TRIPLETS = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "i686": "i386-linux-gnu"}


@dataclass(frozen=True)
class ElfInfo:
    elfclass: int  # 1: 32-bit, 2: 64-bit (e_ident[EI_CLASS])
    machine: int  # e_machine
    interp: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()


def elf_kind(path: str) -> tuple[int, int] | None:
    """``(class, machine)`` from the ELF header, or None if ``path`` is not a regular ELF
    file (opened without blocking: a FIFO is not waited on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        head = os.read(fd, 20) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    order = "<" if head[5] == 1 else ">"
    return head[4], int(struct.unpack(order + "H", head[18:20])[0])


def _expand(entry: str, origin: str) -> str:
    triplet = TRIPLETS.get(platform.machine(), "")
    for token, value in (
        ("ORIGIN", origin),
        ("LIB", f"lib/{triplet}" if triplet else "lib"),
        ("PLATFORM", platform.machine()),
    ):
        entry = entry.replace("${" + token + "}", value).replace("$" + token, value)
    return entry


def read_elf(path: str) -> ElfInfo | None:
    """The loader-relevant headers of ``path``; None if it is not an ELF file."""
    try:
        with open(path, "rb", buffering=0) as f:
            headers = read_headers(f)
    except (BadElf, OSError, struct.error) as exc:
        raise SpecError(f"{path}: cannot read its ELF headers ({exc})", "is it truncated?") from exc
    if headers is None:
        return None
    origin = os.path.dirname(path)

    def expand(entries: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_expand(p, origin) for e in entries for p in e.split(":") if p)

    return ElfInfo(
        headers.elfclass,
        headers.machine,
        headers.interp,
        headers.needed,
        expand(headers.rpath),
        expand(headers.runpath),
    )


def read_ld_so_cache(path: Path = LD_SO_CACHE) -> dict[str, list[str]]:
    """soname -> paths, in the cache's order, from glibc's ld.so.cache (new format).

    Entries for CPU-specific variants (``glibc-hwcaps`` subdirectories) are skipped.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    start = data.find(CACHE_MAGIC)
    if start < 0 or len(data) < start + 48:
        return {}
    nlibs, _strings = struct.unpack_from("<II", data, start + 20)
    out: dict[str, list[str]] = {}

    def string(offset: int) -> str:
        end = data.find(b"\0", start + offset)
        return data[start + offset : end].decode("utf-8", "surrogateescape")

    for i in range(nlibs):
        at = start + 48 + 24 * i
        if at + 24 > len(data):
            break
        _flags, key, value, _os, hwcap = struct.unpack_from("<iIIIQ", data, at)
        if hwcap:  # a glibc-hwcaps variant: an image run on an older CPU could not use it
            continue
        out.setdefault(string(key), []).append(string(value))
    return out


def default_dirs(elfclass: int) -> tuple[str, ...]:
    """The loader's built-in directories (Debian multiarch first, then lib64, then lib)."""
    triplet = TRIPLETS.get(platform.machine())
    dirs: list[str] = []
    if triplet and elfclass == (2 if platform.architecture()[0] == "64bit" else 1):
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elfclass == 2:
        dirs += ["/lib64", "/usr/lib64"]
    return (*dirs, "/lib", "/usr/lib")


@dataclass
class Found:
    """Where a soname was found, and whether the image's loader needs ld.so.cache for it."""

    path: str
    needs_cache: bool


@dataclass
class LibrarySearch:
    cache: dict[str, list[str]] = field(default_factory=dict)
    defaults: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # (soname, (class, machine), rpath and runpath) -> where it was found
    found: dict[tuple[str, tuple[int, int], tuple[str, ...]], Found] = field(default_factory=dict)

    @classmethod
    def host(cls) -> LibrarySearch:
        return cls(read_ld_so_cache())

    def _dirs(self, elfclass: int) -> tuple[str, ...]:
        if elfclass not in self.defaults:
            self.defaults[elfclass] = default_dirs(elfclass)
        return self.defaults[elfclass]

    def find(self, soname: str, needer: str, info: ElfInfo) -> Found:
        """Locate ``soname`` for ``needer`` (whose headers are ``info``) or fail clearly."""
        key = (soname, (info.elfclass, info.machine), (*info.rpath, "", *info.runpath))
        hit = self.found.get(key)
        if hit is None:
            hit = self.found[key] = self._find(soname, needer, info)
        return hit

    def _find(self, soname: str, needer: str, info: ElfInfo) -> Found:
        want = (info.elfclass, info.machine)
        if "/" in soname:
            if elf_kind(soname) == want:
                return Found(soname, False)
            raise SpecError(
                f"{needer} needs {soname}, which is missing or not a matching library",
                "install the package that provides it",
            )
        searched: list[str] = []

        def first(dirs: Iterable[str]) -> str | None:
            for d in dirs:
                searched.append(d)
                candidate = os.path.join(d, soname)
                if elf_kind(candidate) == want:
                    return candidate
            return None

        explicit = (() if info.runpath else info.rpath) + info.runpath
        hit = first(explicit)
        if hit:
            return Found(hit, False)
        for candidate in self.cache.get(soname, []):
            if elf_kind(candidate) == want:
                in_default = os.path.dirname(candidate) in self._dirs(info.elfclass)
                return Found(candidate, not in_default)
        searched.append(str(LD_SO_CACHE))
        hit = first(self._dirs(info.elfclass))
        if hit:
            return Found(hit, False)
        raise SpecError(
            f"{needer} needs the library {soname}, which is not found "
            f"(searched {', '.join(dict.fromkeys(searched))})",
            "install the package that provides it, or add its directory to ld.so.conf "
            "and run ldconfig",
        )
