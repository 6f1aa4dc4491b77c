"""vmbuild's temporary directories: each held by its owner, swept once the owner is gone.

Every directory vmbuild makes under the temporary directory (TMPDIR) is ``vmbuild-*``,
and beside it is a lock file, ``.vmbuild-*.lock`` (the directory itself stays empty for
its user), that the owner keeps locked with ``flock`` for as long as it lives; the file
holds the owner's PID, for people. The lock goes with the owner's last descriptor,
however it ends (even SIGKILL), and unlike a PID it cannot be mistaken for a newer
process, so :func:`sweep_stale` removes exactly the directories whose owner is gone. The
lock file gets its name only once it is locked: a sweeper never sees an unlocked lock
file of a live directory. Each new directory sweeps first, so a killed build's leftovers
go with the next build.

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
import time
from collections.abc import Iterator
from pathlib import Path

from vmbuild import signals

PREFIX = "vmbuild-"
PENDING_AGE = 60.0  # seconds after which an unnamed lock file's maker counts as dead


def lock_path(d: Path) -> Path:
    """The lock file of directory ``d``: ``.NAME.lock`` beside it."""
    return d.with_name(f".{d.name}.lock")


class OwnedDir:
    """A fresh ``PREFIX*`` directory under TMPDIR, locked by this process until removed."""

    def __init__(self, prefix: str = PREFIX, root: Path | None = None) -> None:
        if not prefix.startswith(PREFIX):
            raise ValueError(f"temporary directory prefix {prefix!r} must start with {PREFIX}")
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        self._fd: int | None = None
        pending = self.path.with_name(f".{self.path.name}.new")
        try:
            self._fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # a new file: never waits
            os.write(self._fd, f"{os.getpid()}\n".encode())
            os.rename(pending, lock_path(self.path))
        except BaseException:
            with contextlib.suppress(OSError):
                pending.unlink()
            self.remove()
            raise

    def remove(self) -> None:
        """Delete the directory and its lock file, then let go of the lock (idempotent)."""
        with signals.deferred():
            shutil.rmtree(self.path, ignore_errors=True)
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    lock_path(self.path).unlink()
                os.close(self._fd)
                self._fd = None


@contextlib.contextmanager
def workdir(prefix: str = PREFIX, root: Path | None = None) -> Iterator[Path]:
    """Sweep stale directories, then yield a new owned one (under ``root``, else TMPDIR);
    it is removed on exit."""
    sweep_stale(root)
    owned = OwnedDir(prefix, root)
    try:
        yield owned.path
    finally:
        owned.remove()


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove the ``vmbuild-*`` directories under ``root`` (TMPDIR) whose owner is gone.

    Only this user's real directories are looked at (never a link). One without a lock
    file is being made right now (or its maker died in the instant before the lock file
    got its name: that one goes once its ``.new`` file is a minute old and unlocked), or
    comes from an older vmbuild: then it goes if its ``pid`` file names no live process.
    A lock file left without its directory (its owner died between the two removals)
    goes too. Returns the directories removed.
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    try:
        dirs = {*base.glob(PREFIX + "*")}
        dirs |= {_dir_of(lock) for lock in base.glob(f".{PREFIX}*.lock")}
    except OSError:
        return []
    return [d for d in sorted(dirs) if _remove_if_orphaned(d)]


def _dir_of(lock: Path) -> Path:
    return lock.with_name(lock.name[1:].removesuffix(".lock"))


def _remove_if_orphaned(d: Path) -> bool:
    """Remove ``d`` (if there) and its lock file if nobody holds the lock; whether it did."""
    try:
        st = d.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return False
    except FileNotFoundError:
        pass  # a lock file alone
    except OSError:
        return False
    lock = lock_path(d)
    if not lock.exists():
        pending = d.with_name(f".{d.name}.new")
        with contextlib.suppress(OSError):
            if time.time() - pending.lstat().st_mtime > PENDING_AGE:
                lock = pending
        if lock is not pending:
            return d.exists() and _remove_if_pid_gone(d)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False)):
                return False  # its owner removed it meanwhile: nothing left to do
        except OSError:  # its owner holds it (or removed it)
            return False
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock.unlink()
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
