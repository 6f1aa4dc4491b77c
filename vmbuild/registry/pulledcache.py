"""Pulled archives kept by their hash, so a warm pull of a pinned image is a hard link.

A pullImage spec pins the sha256 of the file it writes, and that hash fixes every byte,
so the file that once hashed to it can stand in for the pull. When a pull's output
matched the spec's hash, the output is hard-linked to ``pulled/HEX.tar`` in the cache
(no copy, no extra space while the output exists), and a record beside it
(``.HEX.tar.verified``) notes the file's device, inode, size and mtime as it was when its
hash was checked. A later pull with the same hash links that file to ``--out`` when the
record still matches (nothing wrote to it since: any write moves its mtime); otherwise it
hashes the file once more, and drops it if the hash no longer matches. So writing to an
output in place, or to the cache's copy, never yields a wrong image. Hard links need one
file system; across two, the entry is copied once and outputs are copies of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from vmbuild.cache import cache_dir, file_identity

KIND = "pulled"


def path_for(sha256: bytes) -> Path:
    """Where the archive hashing to ``sha256`` is kept (builders.basepull reads it too)."""
    return cache_dir() / KIND / f"{sha256.hex()}.tar"


def _record_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp(path: Path) -> list[int]:
    """The archive's version: cache.file_identity without the ctime, which every hard
    link a warm pull makes of the archive moves (its content cannot change through
    one: the archive is only ever replaced whole, as a new inode)."""
    return file_identity(path.stat())[:-1]


def _write_record(path: Path) -> None:
    with contextlib.suppress(OSError):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.rec")
        tmp.write_text(json.dumps(_stamp(path)))
        os.replace(tmp, _record_path(path))


def _hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.digest()


def trusted(sha256: bytes) -> Path | None:
    """The kept archive hashing to ``sha256``, checked cheaply (or rehashed), else None."""
    path = path_for(sha256)
    try:
        stamp = _stamp(path)
    except OSError:
        return None
    try:
        if json.loads(_record_path(path).read_text()) == stamp:
            return path
    except (OSError, ValueError):
        pass
    try:
        good = _hash(path) == sha256
    except OSError:
        return None
    if not good:
        with contextlib.suppress(OSError):
            path.unlink()
            _record_path(path).unlink()
        return None
    _write_record(path)
    return path


def _link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` becomes ``src`` (a hard link, else a copy), atomically."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link.part")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remember(out: Path, sha256: bytes) -> None:
    """``out`` was just written and hashed to ``sha256``: keep it (losing this costs
    only time, so a failure is silent)."""
    path = path_for(sha256)
    with contextlib.suppress(OSError):
        if not (path.exists() and os.path.samefile(out, path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(out, path)
        _write_record(path)


def place(sha256: bytes, out: Path) -> bool:
    """Make ``out`` the kept archive hashing to ``sha256``; False when none is kept."""
    path = trusted(sha256)
    if path is None:
        return False
    try:
        _link_or_copy(path, out)
    except OSError:
        return False
    return True  # (a link moves the inode's ctime, which the record leaves out)
