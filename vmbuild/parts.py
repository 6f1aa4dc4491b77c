"""Part files: the one rule for a file that several processes (or threads) may write
at once (an image at --out, a ``.deb`` in the cache).

Each writer writes its own part beside the final file, ``.NAME.<pid>.<thread>.<random>.part``,
created with ``O_EXCL|O_NOFOLLOW`` (never an existing file, never through a link), and
holds ``flock`` on it for as long as it writes; it renames the part into place only once
it is whole and checked. Two writers never share a part, so neither truncates,
appends to or removes the other's. A part that can be locked has no writer left (it
died: pids can be reused, locks cannot outlive their owner): :func:`sweep` removes
those, and :func:`create` sweeps first, so a killed writer's part goes with the next
writer of the same final name (:func:`sweep_dir`: of any name, in a cache directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path


def prefix(final: Path) -> str:
    """What the name of every part of ``final`` starts with."""
    return f".{final.name}."


def sweep(final: Path, *, old: bool = False) -> None:
    """Remove the parts of ``final`` whose writer is gone (with ``old``, also the
    ``.NAME.*.old-*`` names an output replaced aside)."""
    directory = final.parent if str(final.parent) else Path(".")
    start = prefix(final)
    with contextlib.suppress(OSError):
        names = [
            n
            for n in os.listdir(directory)
            if n.startswith(start) and (n.endswith(".part") or (old and ".old-" in n))
        ]
        for name in names:
            _remove_if_dead(directory / name)


def sweep_dir(directory: Path) -> None:
    """Remove every dead writer's part in ``directory`` (one whose files are all
    written by this rule: a cache directory, never --out's)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if name.startswith(".") and name.endswith(".part"):
                _remove_if_dead(directory / name)


def _remove_if_dead(path: Path) -> None:
    """Remove the part ``path`` unless its writer holds it; the lock is held while it
    goes, so a writer that locks it next finds it gone (:func:`create`)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live writer holds it
            if not os.path.samestat(os.fstat(fd), os.lstat(path)):
                return  # replaced meanwhile
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        finally:
            os.close(fd)


def create(final: Path, *, old: bool = False) -> tuple[int, Path]:
    """A new part of ``final`` (after sweeping dead writers' parts, ``old`` as for
    :func:`sweep`), locked: its descriptor (read-write, mode 0600) and path. OSError
    when it cannot be made."""
    directory = final.parent if str(final.parent) else Path(".")
    sweep(final, old=old)
    while True:
        fd, tmp = tempfile.mkstemp(  # (O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW)
            prefix=f"{prefix(final)}{os.getpid()}.{threading.get_ident()}.",
            suffix=".part",
            dir=directory,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # (waits only for a sweeper, which removes it)
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                return fd, Path(tmp)
        except FileNotFoundError:
            pass  # swept before it was locked: made again
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)


def publish(part: Path, final: Path) -> None:
    """Move the whole, checked ``part`` to ``final``; when another writer put a regular
    file there meanwhile, that one is kept (it passed the same check) and ``part``
    goes. Anything else at ``final`` (a link, a directory) is replaced, never followed."""
    try:
        if stat.S_ISREG(os.lstat(final).st_mode):
            os.unlink(part)
            return
    except FileNotFoundError:
        pass
    try:
        os.replace(part, final)
    except IsADirectoryError:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(part, final)
