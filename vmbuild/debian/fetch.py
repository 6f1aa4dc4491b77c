"""The ``.deb`` files of a lock: downloaded in parallel into ``cache_dir()/debs`` by
SHA256 (each checked as it arrives, before it is kept), each read into one file
``debs/unpacked/<sha256>-<format>`` (:mod:`vmbuild.debian.debfile`) as soon as it is
there, while the others download (the largest waiting first). A second build
downloads and reads nothing.

A :class:`Fetcher` can be given packages while they are still being resolved (each as
the resolver picks it: the resolver never takes a choice back), so the first
downloads and reads overlap the rest of the resolution. Reading a package is CPU (xz
mostly, which frees the GIL): one more than there are cores is read at a time (at
most four: each holds its xz dictionary while the index may still be in memory)."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from vmbuild import cache
from vmbuild.cache import FileMemo, cache_dir, file_identity
from vmbuild.debian import debfile
from vmbuild.signals import Stop

log = logging.getLogger("vmbuild")
WORKERS = 8  # downloads at a time
# cached .debs and unpacked entries whose SHA256 was checked, by the version of their file
CHECKS = FileMemo("deb-checks-v1")
READERS = min(4, (os.cpu_count() or 1) + 1)  # packages read at a time (each ~8 MB)


class Pinned(Protocol):
    """A package file to fetch (a lock's :class:`~vmbuild.debian.lock.Locked`, or a
    resolver's candidate)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


def debs_dir() -> Path:
    return cache_dir() / "debs"


def deb_path(pkg: Pinned) -> Path:
    return debs_dir() / f"{pkg.sha256}.deb"


def unpacked_path(pkg: Pinned) -> Path:
    return debs_dir() / "unpacked" / debfile.entry_name(pkg.sha256)


def cached_deb(mirror: str, pkg: Pinned, stop: Stop | None = None) -> Path:
    """The package's ``.deb`` in the cache, checked: fetched when it is not there, or
    when what is there is not it (not a regular file, another size or SHA256: dropped
    quietly and fetched again)."""
    deb = deb_path(pkg)
    if not _checked(deb, pkg):
        from vmbuild.debian.http import download  # (urllib3: only when downloading)

        download(mirror, pkg.filename, deb, pkg.size, pkg.sha256, stop)
    return deb


def _checked(deb: Path, pkg: Pinned) -> bool:
    """Whether ``deb`` is the package: its SHA256 checked, or this version of the file
    (:func:`~vmbuild.cache.file_identity`) remembered as checked. One that is not is
    removed."""
    try:
        fd = os.open(deb, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:  # a link, or unreadable: replaced by the download
        return False
    try:
        st = os.fstat(fd)
        what = ["sha256", pkg.sha256]
        if stat.S_ISREG(st.st_mode) and st.st_size == pkg.size:
            if CHECKS.recall(st, what) is not None:
                return True
            since = time.time_ns()
            with open(fd, "rb", closefd=False) as f:
                got = hashlib.file_digest(f, "sha256").hexdigest()
            if got == pkg.sha256:
                CHECKS.record(st, what, {"sha256": pkg.sha256}, since)
                return True
        log.debug("cached %s is not %s %s; fetching it again", deb, pkg.name, pkg.version)
        with contextlib.suppress(OSError):
            if file_identity(os.lstat(deb)) == file_identity(st):
                os.unlink(deb)  # (what is there now is not what was checked: left)
        return False
    finally:
        os.close(fd)


def naming_file(exc: debfile.DebError, deb: Path) -> debfile.DebError:
    """``exc`` (naming the package), its hint naming the cache file it was read from."""
    hint = f"{exc.hint}; " if exc.hint else ""
    named = debfile.DebError(
        exc.message, f"{hint}the cached file is {deb}: delete it to fetch it again"
    )
    named.__cause__ = exc
    return named


def _read(deb: Path, pkg: Pinned, mirror: str) -> Path:
    done = unpacked_path(pkg)
    done.parent.mkdir(parents=True, exist_ok=True)
    expect = debfile.Identity(pkg.name, pkg.version, pkg.architecture, mirror)
    debfile.unpack(deb, done, f"{pkg.name} {pkg.version} ({pkg.filename})", expect)
    return done


class Fetcher:
    """Downloads and reads packages in the background; :meth:`wait` gives the unpacked
    directories. With ``read`` false a package is only downloaded until :meth:`wait`
    asks for it (configure = true: the guest's dpkg installs most from their .debs).
    Used as a context manager: on the way out, what is still queued is dropped and
    running work is waited for (no thread outlives the build)."""

    def __init__(self, mirror: str, read: bool = True):
        self.mirror = mirror
        self.read = read
        self._downloads = ThreadPoolExecutor(WORKERS, thread_name_prefix="deb-get")
        self._stop = Stop()  # stops the downloads (close)
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="deb-read")
        # sha256 -> its download, giving its read (None: not read yet)
        self._started: dict[str, Future[Future[Path] | None]] = {}
        self._told = False
        # downloaded, waiting to be read: the largest is read first (the big ones,
        # often resolved last, would otherwise be read last, alone)
        self._ready: list[tuple[int, int, Path, Pinned, Future[Path]]] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        gate = threading.Event()  # each waits: a new thread per task, all started now
        for pool, n in ((self._downloads, WORKERS), (self._readers, READERS)):
            for _ in range(n):  # (not on the resolver's time)
                pool.submit(gate.wait)
        gate.set()

    def start(self, pkg: Pinned) -> None:
        """Fetch ``pkg`` (unless started): from the cache when its entry there is sound
        (:meth:`_cached`), else downloaded (unless its .deb is there) and read."""
        if pkg.sha256 in self._started:
            return
        if not self._told and not (self.read and unpacked_path(pkg).is_file()):
            cache.directory(debs_dir())
            log.info("fetching Debian packages")
            self._told = True
        self._started[pkg.sha256] = self._downloads.submit(self._cached, pkg, cache.holds())

    def _download(self, pkg: Pinned) -> Future[Path] | None:
        deb = cached_deb(self.mirror, pkg, self._stop)
        return self._queue_read(deb, pkg) if self.read else None

    def _queue_read(self, deb: Path, pkg: Pinned) -> Future[Path]:
        done: Future[Path] = Future()
        with self._lock:
            heapq.heappush(self._ready, (-pkg.size, next(self._seq), deb, pkg, done))
        self._readers.submit(self._read_largest)
        return done

    def _read_largest(self) -> None:
        """Read the largest package waiting (one task is submitted per package)."""
        with self._lock:
            _, _, deb, pkg, done = heapq.heappop(self._ready)
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(_read(deb, pkg, self.mirror))
        except debfile.DebError as exc:  # (the package named; and its file)
            done.set_exception(naming_file(exc, deb))
        except BaseException as exc:  # (given to whoever waits for it)
            done.set_exception(exc)

    def wait(self, packages: Sequence[Pinned]) -> dict[str, Path]:
        """name -> the unpacked directory of each of ``packages`` (fetched as needed,
        the largest first)."""
        for pkg in sorted(packages, key=lambda p: (-p.size, p.name)):
            self.start(pkg)
        reads = []
        for pkg in packages:
            started = self._started.get(pkg.sha256)
            if started is None:
                continue
            read = started.result()
            if read is None:  # downloaded only: read now
                read = self._queue_read(deb_path(pkg), pkg)
                done: Future[Future[Path] | None] = Future()
                done.set_result(read)
                self._started[pkg.sha256] = done
            reads.append(read)
        for read in reads:
            read.result()
        return {p.name: unpacked_path(p) for p in packages}

    def _cached(self, pkg: Pinned, holds: cache.Holds) -> Future[Path] | None:
        """``pkg``'s entry when the cache's is sound (its bytes hash to its trailer's
        hash, or this version of its file was found so), else :meth:`_download`. The
        entry and the .deb are held first, for the build (``holds``): a prune leaves
        what is found or made here until it ends."""
        entry = unpacked_path(pkg)
        holds.hold(entry)
        if self.read and debfile.is_current(entry, CHECKS):
            done: Future[Path] = Future()
            done.set_result(entry)
            return done
        if os.path.lexists(entry) and not entry.is_file():  # (a file is replaced whole)
            cache.discard(entry)
        holds.hold(deb_path(pkg))
        return self._download(pkg)

    def downloaded(self, packages: Sequence[Pinned]) -> None:
        """Wait for the downloads of ``packages`` (those started)."""
        for pkg in packages:
            started = self._started.get(pkg.sha256)
            if started is not None:
                started.result()

    def close(self) -> None:
        """Drop what is queued, stop the downloads still running (at once: a read
        blocked on a slow mirror is woken) and wait for the threads (so no part file or
        thread outlives the build)."""
        self._stop.stop()
        self._downloads.shutdown(wait=True, cancel_futures=True)
        self._readers.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fetch_all(mirror: str, packages: Sequence[Pinned]) -> dict[str, Path]:
    """name -> the unpacked directory of each package (fetched as needed)."""
    with Fetcher(mirror) as fetcher:
        return fetcher.wait(packages)
