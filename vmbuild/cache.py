"""The content-addressed cache under the user's cache directory.

Entries are keyed by the sha256 of their inputs and published atomically: a writer
fills a temporary sibling and renames it into place, so a reader never sees half an
entry and two concurrent builders simply race to an identical result. An entry that is
expensive to make (the guest kernel, the KVM probe) is made under :func:`lock`, so that
concurrent first uses wait for one maker instead of each making their own. Small
facts worth remembering (a layer's diff_id, ELF headers, which blobs a registry has) are
JSON files read with :func:`read_json` and replaced atomically with :func:`write_json`;
losing one only costs time.

An entry a build reads is held against ``vmbuild cache prune`` for as long as the build
runs (:func:`holding`, :func:`hold`): the reader keeps a shared ``flock`` on the entry's
lock file (:func:`lock_file`), and prune removes only an entry whose lock it takes
exclusively without waiting (:mod:`vmbuild.cachelist`). A hold is taken before the entry
is looked at (or made), so what the reader finds, or makes, stays until its build ends.
Holds are for entries nobody makes under :func:`lock` (a maker waiting there for a
reader's build to end could wait for a build that waits for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from vmbuild.errors import VmbuildError

log = logging.getLogger("vmbuild")


class CacheError(VmbuildError):
    """Something that is not vmbuild's stands where the cache keeps its entries."""


def cache_dir() -> Path:
    """``$VMBUILD_CACHE_DIR``, else ``$XDG_CACHE_HOME/vmbuild``, else ``~/.cache/vmbuild``."""
    explicit = os.environ.get("VMBUILD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vmbuild"


def key(parts: Iterable[bytes | str]) -> str:
    """A stable hex key over ``parts`` (each length-prefixed, so boundaries matter)."""
    import hashlib  # here: ``vmbuild push``'s one-HEAD path needs no OpenSSL hashing

    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def entry(kind: str, digest: str) -> Path:
    """Where the entry ``digest`` of ``kind`` lives (it may not exist yet)."""
    return cache_dir() / kind / digest


def directory(path: Path) -> Path:
    """``path``, made with its parents if missing; CacheError when a file stands there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        where = next((p for p in (path, *path.parents) if p.is_file() or p.is_symlink()), path)
        raise CacheError(
            f"the cache directory {path} cannot be made: {where} is not a directory",
            "remove it (vmbuild makes the cache again as it needs it)",
        ) from exc
    return path


def lock_file(path: Path) -> Path:
    """The lock file of the entry ``path``: ``.NAME.lock`` beside it."""
    return path.parent / f".{path.name}.lock"


def discard(path: Path) -> bool:
    """Remove the entry ``path`` whole: renamed to a dot name first (so no reader sees
    half of it), then deleted; False when it is not there."""
    aside = path.with_name(f".{path.name[:40]}-gone-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(path, aside)
    except OSError:
        return False
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)
    return True


class Holds:
    """The entries one build holds (:func:`hold`): a shared ``flock`` on each one's lock
    file, let go by :meth:`release` (or the process's end, however it ends)."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._mutex = threading.Lock()

    def hold(self, path: Path) -> None:
        """Hold the entry ``path`` (there or not yet) until :meth:`release`: waits only
        while a prune is removing it."""
        with self._mutex:
            if path in self._fds:
                return
        fd = _shared(lock_file(path))
        with self._mutex:
            if path in self._fds:  # another thread of the build held it meanwhile
                os.close(fd)
            else:
                self._fds[path] = fd

    def release(self) -> None:
        """Let every entry go; the lock file of one that was never made goes too, unless
        another build holds it."""
        with self._mutex:
            held, self._fds = list(self._fds.items()), {}
        for path, fd in held:
            if not os.path.lexists(path):
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    lock_file(path).unlink()
            os.close(fd)


def _shared(lock: Path) -> int:
    """A descriptor holding a shared lock on the file ``lock`` (made if missing) that is
    still the one at its path (a prune that removed the entry also unlinked it)."""
    directory(lock.parent)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False)):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


_PROCESS = Holds()  # holds taken outside any build: kept until the process ends
_holds: ContextVar[Holds | None] = ContextVar("vmbuild_cache_holds", default=None)


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """A build: the entries :func:`hold` takes in the block are let go at its end."""
    holds = Holds()
    token = _holds.set(holds)
    try:
        yield
    finally:
        _holds.reset(token)
        holds.release()


def holds() -> Holds:
    """The current build's holds (for threads of it, which do not share its context)."""
    return _holds.get() or _PROCESS


def hold(path: Path) -> None:
    """Hold the cache entry ``path`` against prune until the current build ends (see the
    module's text); take it before looking at the entry, or making it."""
    holds().hold(path)


@contextlib.contextmanager
def publish(kind: str, digest: str) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success rename it to ``entry(kind, digest)``.

    On an exception the temporary directory is removed and nothing is published.
    """
    final = entry(kind, digest)
    directory(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def lock(kind: str, digest: str, waiting: str = "") -> Iterator[None]:
    """Hold the exclusive lock of ``entry(kind, digest)`` for the block.

    The lock is ``flock`` on ``.DIGEST.lock`` beside the entry: it is let go however its
    holder ends (even SIGKILL). Whoever waits logs ``waiting`` first. A maker checks for
    the entry again once it holds the lock (the previous holder may have made it); it
    also removes what a killed maker of the same entry left of its temporary directory.
    """
    final = entry(kind, digest)
    directory(final.parent)
    fd = os.open(lock_file(final), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info("%s", waiting)
            fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in final.parent.glob(f".{digest[:12]}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    """The JSON in the cache file ``path``; None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Replace the cache file ``path`` with ``data`` as JSON, atomically (a temporary
    sibling renamed into place). Failures are ignored: it is only a cache."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# A file changed within this long of a check may change again in the same clock tick
# without its ctime moving (the kernel's file times are coarse): such a file is checked
# but never remembered (as git treats a "racy" index entry).
RACY_NS = 3_000_000_000


def file_identity(st: os.stat_result) -> list[int]:
    """What names one version of a file: device, inode, size, mtime and ctime. Every
    write, truncation, chmod or chown sets the ctime to the current time, and no system
    call sets it back (utime sets the mtime and atime only); a file renamed into its
    place, or made anew there, has another inode or ctime."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def settled(st: os.stat_result, since_ns: int) -> bool:
    """Whether the file last changed at least :data:`RACY_NS` before ``since_ns``."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < since_ns - RACY_NS


class FileMemo:
    """Facts about one version of a file (:func:`file_identity`) and ``what`` was asked
    of it, one small JSON file each under ``cache_dir()/kind`` (:func:`read_json`,
    :func:`write_json`): losing or corrupting one costs only time. A file that changed
    within :data:`RACY_NS` of the check that found the facts is not remembered."""

    def __init__(self, kind: str):
        self.kind = kind

    def _path(self, st: os.stat_result, what: Iterable[object]) -> Path:
        doc = json.dumps([file_identity(st), list(what)], default=str)
        return entry(self.kind, key([doc]))

    def recall(self, st: os.stat_result, what: Iterable[object]) -> dict[str, Any] | None:
        data = read_json(self._path(st, what))
        return data if isinstance(data, dict) else None

    def record(
        self, st: os.stat_result, what: Iterable[object], facts: dict[str, Any], since_ns: int
    ) -> None:
        """Remember ``facts``, found by a check that began at ``since_ns`` on the file
        whose status was then ``st`` (and still was at its end)."""
        if settled(st, since_ns):
            write_json(self._path(st, what), facts)
