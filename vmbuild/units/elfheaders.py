"""The few ELF header fields the dynamic loader uses, read with ``struct``.

Reads the file header, the program headers, ``PT_INTERP`` and the ``PT_DYNAMIC`` table
(``DT_NEEDED``, ``DT_RPATH``, ``DT_RUNPATH``; strings through ``DT_STRTAB`` mapped to a
file offset by the ``PT_LOAD`` segment that holds it). Section headers are never read
(they may be stripped; the loader does not use them either). pyelftools reads the same
fields, but builds every section and segment object on the way, which made planning a
large closure take seconds; this reads only the few fields the loader uses.
The tests check both agree on the host's programs and libraries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from operator import itemgetter
from typing import BinaryIO

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29
MAX_TABLE = 1 << 20  # a dynamic table or interpreter name larger than this is corrupt


class BadElf(ValueError):
    """The file says it is ELF but its headers do not hold together."""


@dataclass(frozen=True)
class Headers:
    elfclass: int
    machine: int
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    if size < 0 or size > MAX_TABLE:
        raise BadElf(f"implausible table size {size}")
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise BadElf("truncated")
    return data


def read_headers(f: BinaryIO) -> Headers | None:
    """The loader's fields of the ELF file ``f``; None if it is not ELF."""
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2):
        return None
    wide = ident[4] == 2
    order = {1: "<", 2: ">"}.get(ident[5])
    if order is None:
        return None
    machine = struct.unpack_from(order + "H", ident, 18)[0]
    if wide:
        (phoff,) = struct.unpack_from(order + "Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 0x36)
        ph_fmt, ph_fields = order + "IIQQQQQQ", (0, 2, 3, 5)  # type, offset, vaddr, filesz
    else:
        (phoff,) = struct.unpack_from(order + "I", ident, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", ident, 0x2A)
        ph_fmt, ph_fields = order + "IIIIIIII", (0, 1, 2, 4)
    if phentsize < struct.calcsize(ph_fmt) and phnum:
        raise BadElf("program header entries too small")
    table = _read(f, phoff, phentsize * phnum)
    pick = itemgetter(*ph_fields)
    if phentsize == struct.calcsize(ph_fmt):
        segments = [pick(entry) for entry in struct.iter_unpack(ph_fmt, table)]
    else:
        segments = [pick(struct.unpack_from(ph_fmt, table, i * phentsize)) for i in range(phnum)]
    interp: str | None = None
    dynamic: bytes | None = None
    for p_type, offset, _vaddr, filesz in segments:
        if p_type == PT_INTERP:
            interp = _read(f, offset, filesz).split(b"\0", 1)[0].decode("utf-8", "replace")
        elif p_type == PT_DYNAMIC:
            dynamic = _read(f, offset, filesz)
    if dynamic is None:
        return Headers(ident[4], machine, interp, (), (), ())
    d_fmt = order + ("qQ" if wide else "iI")
    entry = struct.calcsize(d_fmt)
    tags: list[tuple[int, int]] = []
    for tag, value in struct.iter_unpack(d_fmt, dynamic[: len(dynamic) - len(dynamic) % entry]):
        if tag == DT_NULL:
            break
        tags.append((tag, value))
    strtab = next((v for t, v in tags if t == DT_STRTAB), None)
    base = None
    if strtab is not None:
        for p_type, offset, vaddr, filesz in segments:
            if p_type == PT_LOAD and vaddr <= strtab < vaddr + filesz:
                base = strtab - vaddr + offset
                break
    strings: dict[int, list[str]] = {DT_NEEDED: [], DT_RPATH: [], DT_RUNPATH: []}
    for tag, value in tags:
        if tag in strings:
            if base is None:
                raise BadElf("DT_STRTAB is not in a loaded segment")
            strings[tag].append(_string(f, base + value))
    return Headers(
        ident[4],
        machine,
        interp,
        tuple(strings[DT_NEEDED]),
        tuple(strings[DT_RPATH]),
        tuple(strings[DT_RUNPATH]),
    )


def _string(f: BinaryIO, offset: int) -> str:
    f.seek(offset)
    out = b""
    while b"\0" not in out:
        chunk = f.read(256)
        if not chunk:
            raise BadElf("unterminated string")
        out += chunk
        if len(out) > 1 << 16:
            raise BadElf("string too long")
    return out.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
