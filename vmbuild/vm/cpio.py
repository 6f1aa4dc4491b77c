"""A deterministic writer for the kernel's initramfs format (``newc`` cpio).

Entries are written in the order given, with fixed owners (root), a fixed mtime
(0) and inode numbers counted from 1, so the same entries always give the same bytes.
Hard links are not used: each file carries its own data.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. ``path`` is relative (no leading slash)."""

    path: str
    mode: int  # full st_mode: type bits and permissions
    data: bytes = b""  # file content, or the target of a symlink

    @classmethod
    def dir(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644) -> Entry:
        return cls(path, stat.S_IFREG | perm, data)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def chardev(cls, path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        # The device number travels in the data slot as "major:minor" (see _header).
        return cls(path, stat.S_IFCHR | perm, f"{major}:{minor}".encode())


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(entry: Entry, ino: int) -> tuple[bytes, bytes]:
    """The header (with name and padding) and the padded body of ``entry``."""
    rmajor = rminor = 0
    body = entry.data
    if stat.S_ISCHR(entry.mode) or stat.S_ISBLK(entry.mode):
        major, minor = entry.data.decode().split(":")
        rmajor, rminor = int(major), int(minor)
        body = b""
    if stat.S_ISDIR(entry.mode):
        body = b""
    name = entry.path.encode() + b"\0"
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        2 if stat.S_ISDIR(entry.mode) else 1,  # nlink
        0,  # mtime
        len(body),
        0,  # dev major
        0,  # dev minor
        rmajor,
        rminor,
        len(name),
        0,  # check
    )
    head = MAGIC + b"".join(b"%08X" % f for f in fields) + name
    return head + _pad(len(head)), body + _pad(len(body))


def write(out: BinaryIO, entries: Iterable[Entry]) -> None:
    """Write ``entries`` and the trailer to ``out`` as one newc archive."""
    ino = 0
    for ino, entry in enumerate(entries, start=1):
        if entry.path.startswith("/") or not entry.path:
            raise ValueError(f"cpio member path must be relative: {entry.path!r}")
        head, body = _header(entry, ino)
        out.write(head)
        out.write(body)
    head, _ = _header(Entry(TRAILER, 0), ino + 1)
    out.write(head)
    out.write(_pad(0))
