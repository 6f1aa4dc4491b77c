"""What the cache holds, and pruning it: ``vmbuild cache ls`` and ``vmbuild cache prune``.

The cache (:func:`vmbuild.cache.cache_dir`) is a directory per kind (``kernel``,
``initramfs``, ``blobs`` ...); each child of a kind's directory is one entry (for
``blobs``, each child of ``blobs/sha256`` and ``blobs/unpacked``; for ``debs``, each
``.deb`` and each child of ``debs/unpacked``). An entry's age is the
time since its newest file was last written or read, so an entry in use stays young.
Names starting with a dot are locks and half-written entries, never listed, nor are
names ending in ``.part`` (files being written).

Pruning removes whole entries, oldest first: it renames an entry to a dot name (so no
reader ever sees half of one), then deletes it. An entry whose lock
(``.ENTRY.lock``, :func:`vmbuild.cache.lock_file`) a running build holds (a maker's
:func:`vmbuild.cache.lock`, a reader's :func:`vmbuild.cache.hold`) is kept: prune takes
the lock exclusively without waiting, and skips the entry when it cannot.
Every entry is something vmbuild makes again when it is missing; pruning only costs time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmbuild.cache import cache_dir, discard, lock_file
from vmbuild.errors import SpecError

# What each kind holds, for `cache ls` (a kind not named here is listed by its name).
KINDS = {
    "kernel": "guest kernels built from source",
    "cloud-kernel": "distribution guest kernels",
    "cloud-initrd": "initrds with the distribution kernel's modules",
    "initramfs": "guest userlands (initramfs)",
    "initramfs-index": "initramfs lookups by input stamp",
    "accel-probe": "KVM probe results",
    "ssh-keys": "the guest's SSH keys",
    "blobs": "registry blobs (pulled and pushed layers)",
    "layer-blobs": "compressed forms of layers, by diff_id",
    "registry-seen": "blobs known to be in each registry",
    "pulled": "pulled base images (fromImage pullImage tables)",
    "steps": "runAsRoot step results",
    "elf-info-v1": "ELF dependency records",
    "layer-ids-v2": "diff_ids of layered images' layers",
    "layer-checks-v1": "base layers already checked, by the version of their file",
    "remote-cache": "records of remote cache entries",
    "debs": "Debian packages, by SHA256",
    "deb-checks-v1": "cached Debian packages already checked, by the version of their file",
    "debian": "verified Debian package indexes",
    "pushed": "what each pushed archive was, for a one-request re-push",
}
# kinds whose entries sit one directory further down: in every subdirectory (None), or
# in those named (the kind's other children are entries themselves)
NESTED: dict[str, set[str] | None] = {"blobs": None, "debs": {"unpacked"}}
DAY = 86400.0
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    size: int  # bytes on disk of every file in it
    used: float  # the newest access or write time of its files (epoch seconds)


def parse_size(text: str) -> int:
    """``500M``, ``10G``, ``1.5GiB``, ``2048`` (bytes) -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise SpecError(f"--max-size {text!r} is not a size", "give e.g. 500M, 10G or 2048")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _measure(path: Path) -> tuple[int, float]:
    """(bytes, newest atime/mtime of its files) of ``path`` and everything under it.

    Directories' own times are left out (listing one marks it read); a file that
    vanishes meanwhile counts as nothing.
    """
    try:
        st = path.lstat()
    except OSError:
        return 0, 0.0
    if not path.is_dir() or path.is_symlink():
        return st.st_blocks * 512, max(st.st_atime, st.st_mtime)
    size, used = st.st_blocks * 512, 0.0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                s = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size += s.st_blocks * 512
            if name in files:
                used = max(used, s.st_atime, s.st_mtime)
    return size, used or st.st_mtime


def _children(directory: Path) -> Iterator[Path]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        if not name.startswith(".") and not name.endswith(".part"):
            yield directory / name


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry in the cache, by kind then name."""
    root = cache_dir() if root is None else root
    found = []
    for kind_dir in _children(root):
        if not kind_dir.is_dir():
            continue
        kind = kind_dir.name
        for path in _entry_paths(kind_dir, NESTED.get(kind, set())):
            size, used = _measure(path)
            found.append(Entry(kind, path, size, used))
    return found


def _entry_paths(kind_dir: Path, nested: set[str] | None) -> Iterator[Path]:
    for path in _children(kind_dir):
        if nested is None or path.name in nested:
            if path.is_dir() and not path.is_symlink():
                yield from _children(path)
        else:
            yield path


@dataclass(frozen=True)
class KindSummary:
    kind: str
    count: int
    size: int
    oldest: float  # seconds since the least recently used entry was used


def summary(found: list[Entry], now: float | None = None) -> list[KindSummary]:
    now = time.time() if now is None else now
    kinds: dict[str, list[Entry]] = {}
    for e in found:
        kinds.setdefault(e.kind, []).append(e)
    return [
        KindSummary(k, len(es), sum(e.size for e in es), now - min(e.used for e in es))
        for k, es in sorted(kinds.items())
    ]


@contextlib.contextmanager
def _unlocked(entry: Entry) -> Iterator[bool]:
    """Whether ``entry``'s lock is free (then held for the block). The lock file is made
    when missing: a reader that comes to hold the entry meanwhile then waits for it."""
    try:
        fd = os.open(
            lock_file(entry.path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
        )
    except OSError:
        yield False  # a lock that cannot be taken is not taken
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove(entry: Entry) -> bool:
    """Remove ``entry`` whole (renamed aside first); False when in use or gone."""
    with _unlocked(entry) as free:
        if not free:
            return False
        removed = discard(entry.path)
        lock_file(entry.path).unlink(missing_ok=True)  # (nobody holds it: held here)
        return removed


def choose(
    found: list[Entry], older_than: float | None, max_size: int | None, now: float | None = None
) -> list[Entry]:
    """The entries to remove: every one unused for ``older_than`` days, then the least
    recently used until the rest fit in ``max_size`` bytes."""
    now = time.time() if now is None else now
    by_age = sorted(found, key=lambda e: e.used)
    chosen: list[Entry] = []
    kept = list(by_age)
    if older_than is not None:
        limit = now - older_than * DAY
        chosen = [e for e in by_age if e.used < limit]
        kept = [e for e in by_age if e.used >= limit]
    if max_size is not None:
        total = sum(e.size for e in kept)
        while kept and total > max_size:
            e = kept.pop(0)
            chosen.append(e)
            total -= e.size
    return chosen


def prune(older_than: float | None, max_size: int | None) -> tuple[list[Entry], list[Entry]]:
    """Remove what :func:`choose` picks; returns (removed, kept because in use)."""
    removed: list[Entry] = []
    busy: list[Entry] = []
    for e in choose(entries(), older_than, max_size):
        (removed if remove(e) else busy).append(e)
    return removed, busy
