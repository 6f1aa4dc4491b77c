"""Part files: the one rule for a file that several processes (or threads) may write
at once (an image at --out, a ``.deb`` in the cache).

Each writer writes its own part beside the final file, ``.NAME.<pid>.<thread>.<random>.part``,
created with ``O_EXCL|O_NOFOLLOW`` (never an existing file, never through a link) and
named so only once locked, and holds ``flock`` on it until it has renamed the part into
place (once it is whole and checked) or removed it. Two writers never share a part, so
neither truncates, appends to or removes the other's. A part that can be locked has no
writer left (it died: pids can be reused, locks cannot outlive their owner):
:func:`sweep` removes those, and :func:`create` sweeps first, so a killed writer's part
goes with the next writer of the same final name.
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
            path = directory / name
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                finally:
                    os.close(fd)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()


def create(final: Path, *, old: bool = False) -> tuple[int, Path]:
    """A new part of ``final`` (after sweeping dead writers' parts, ``old`` as for
    :func:`sweep`), locked: its descriptor (read-write, mode 0600) and path. OSError
    when it cannot be made."""
    directory = final.parent if str(final.parent) else Path(".")
    sweep(final, old=old)
    fd, new = tempfile.mkstemp(  # (O_RDWR|O_CREAT|O_EXCL|O_NOFOLLOW)
        prefix=f"{prefix(final)}{os.getpid()}.{threading.get_ident()}.",
        suffix=".new",  # the .part name only once locked: a sweep never takes it
        dir=directory,
    )
    tmp = new.removesuffix(".new") + ".part"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: never waits
        os.rename(new, tmp)
    except BaseException:
        os.close(fd)
        os.unlink(new)
        raise
    return fd, Path(tmp)


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
