"""The shared-library closure of host ELF programs, for copying them into the guest.

Reads each file's ``PT_INTERP`` and ``DT_NEEDED`` entries with pyelftools and resolves
sonames in the host's standard library directories (the guest never runs ``ldd``).
The result is a set of host paths, including the symlinks met on the way, so the guest
tree can mirror the host's layout exactly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from vmbuild.errors import ToolMissing

LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


def elf_deps(path: Path) -> tuple[str | None, list[str]]:
    """``(interpreter, needed sonames)`` of an ELF file; ``(None, [])`` if not ELF."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            interp: str | None = None
            needed: list[str] = []
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = str(seg.get_interp_name())  # type: ignore[attr-defined]
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(str(tag.needed))  # type: ignore[attr-defined]
            return interp, needed
    except ELFError:
        return None, []


def resolve_soname(soname: str, dirs: Iterable[str] = LIBRARY_DIRS) -> Path:
    for d in dirs:
        candidate = Path(d) / soname
        if candidate.exists():
            return candidate
    raise ToolMissing(
        f"shared library {soname} (needed by a guest tool) is not on this host",
        "run scripts/setup to install the guest tools' packages",
    )


def with_links(path: Path) -> list[Path]:
    """``path`` and every symlink hop to its final target (parents canonicalised)."""
    chain: list[Path] = []
    current = Path(os.path.realpath(path.parent)) / path.name
    for _ in range(40):
        chain.append(current)
        if not current.is_symlink():
            return chain
        target = Path(os.readlink(current))
        current = target if target.is_absolute() else current.parent / target
        current = Path(os.path.realpath(current.parent)) / current.name
    raise OSError(f"too many symlinks resolving {path}")


def closure(programs: Iterable[Path]) -> set[Path]:
    """Every host path needed to run ``programs``: themselves, links, interpreter, libs."""
    seen: set[Path] = set()
    todo = list(programs)
    while todo:
        for path in with_links(todo.pop()):
            if path in seen:
                continue
            seen.add(path)
            if path.is_symlink():
                continue
            interp, needed = elf_deps(path)
            if interp:
                todo.append(Path(interp))
            todo.extend(resolve_soname(name) for name in needed)
    return seen
