"""vmbuild's temporary directories: each held by its owner, swept once the owner is gone.

Every directory vmbuild makes under the temporary directory (TMPDIR) is ``vmbuild-*``
and holds a lock file, ``.owner``, that its owner keeps locked with ``flock`` for as long
as it lives (the file holds the owner's PID, for people). The lock goes with the owner's
last descriptor, however it ends (even SIGKILL), and unlike a PID it cannot be mistaken
for a newer process, so :func:`sweep_stale` removes exactly the directories whose owner
is gone. The lock file gets its name only once it is locked: a sweeper never sees an
unlocked ``.owner`` of a live directory. Each new directory sweeps first, so a killed
build's leftovers go with the next build.

Usage::

    with tempdirs.workdir("vmbuild-") as wd:   # a Path; removed on exit
        ...
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vmbuild import signals

PREFIX = "vmbuild-"
LOCK = ".owner"


class OwnedDir:
    """A fresh ``PREFIX*`` directory under TMPDIR, locked by this process until removed."""

    def __init__(self, prefix: str = PREFIX) -> None:
        if not prefix.startswith(PREFIX):
            raise ValueError(f"temporary directory prefix {prefix!r} must start with {PREFIX}")
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._fd: int | None = None
        try:
            pending = self.path / (LOCK + ".new")
            self._fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # a new file: never waits
            os.write(self._fd, f"{os.getpid()}\n".encode())
            os.rename(pending, self.path / LOCK)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Delete the directory, then let go of its lock (idempotent, never interrupted)."""
        with signals.deferred():
            shutil.rmtree(self.path, ignore_errors=True)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


@contextlib.contextmanager
def workdir(prefix: str = PREFIX) -> Iterator[Path]:
    """Sweep stale directories, then yield a new owned one; it is removed on exit."""
    sweep_stale()
    owned = OwnedDir(prefix)
    try:
        yield owned.path
    finally:
        owned.remove()


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove the ``vmbuild-*`` directories under ``root`` (TMPDIR) whose owner is gone.

    Only this user's real directories are looked at (never a link). One without a lock
    file is being made right now, or comes from an older vmbuild: it is removed only if
    its ``pid`` file names a process that no longer exists. Returns what was removed.
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    removed = []
    try:
        candidates = sorted(base.glob(PREFIX + "*"))
    except OSError:
        return []
    for d in candidates:
        if _remove_if_orphaned(d):
            removed.append(d)
    return removed


def _remove_if_orphaned(d: Path) -> bool:
    try:
        st = d.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return False
        fd = os.open(d / LOCK, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _remove_if_pid_gone(d)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner holds it
            return False
        shutil.rmtree(d, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def _remove_if_pid_gone(d: Path) -> bool:
    """An older vmbuild's directory: its ``pid`` file tells whether the owner lives."""
    try:
        pid = int((d / "pid").read_text())
        os.kill(pid, 0)
    except ProcessLookupError:
        shutil.rmtree(d, ignore_errors=True)
        return True
    except (OSError, ValueError):
        pass
    return False
