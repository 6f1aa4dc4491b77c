"""HTTP for a package mirror (urllib3): small bodies read whole, indexes and files
streamed. Every transfer is bounded: it reads at most one byte more than it may take
(an index's signed size, a package's), has a read timeout, and is stopped at once by
its :class:`~vmbuild.signals.Stop` (a blocked read is woken: its socket is shut down). A package is
written into a part file of its own (:mod:`vmbuild.parts`), hashed as it arrives, and
renamed into place only when its size and SHA256 match."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import os
import socket
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import urllib3

from vmbuild import parts
from vmbuild.errors import ImageError, VmbuildError
from vmbuild.oci.safety import open_beneath
from vmbuild.signals import Stop

MAX_INDEX = 512 << 20
CHUNK = 1 << 20
TIMEOUT = urllib3.Timeout(connect=15.0, read=60.0)  # seconds without a byte
_HINT = "check the [debian] mirror (or the host's apt sources) and the network"
_CURRENT = threading.local()  # .stop, .watched: this thread's request's Stop, sockets


class _WatchedHTTP(urllib3.connection.HTTPConnection):
    """A connection that its thread's Stop can wake all along a request: its answer's
    head, a redirect's body drained, a retry (a mirror that stalls anywhere)."""

    def connect(self) -> None:
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


def _watch(conn: object) -> None:
    stop: Stop | None = getattr(_CURRENT, "stop", None)
    if stop is not None:
        _CURRENT.watched.append(stop.watch(conn))


class _WatchedHTTPS(_WatchedHTTP, urllib3.connection.HTTPSConnection):
    pass  # (first: its connect and request wrap HTTPS's)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


_POOL = urllib3.PoolManager(
    num_pools=4,
    maxsize=8,
    # (no waiting a Retry-After out: a server could ask for days, in a thread no Stop wakes)
    retries=urllib3.Retry(3, backoff_factor=0.3, redirect=5, respect_retry_after_header=False),
)
_POOL.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class MirrorError(VmbuildError):
    """A mirror cannot be reached, answers an error, or serves what does not match."""


def get(url: str, limit: int, stop: Stop | None = None) -> bytes:
    """The body of ``url`` (at most ``limit`` bytes), or MirrorError naming the URL."""
    data = b"".join(chunks(url, limit, stop))
    if len(data) > limit:
        raise MirrorError(f"{url} is larger than {limit} bytes; not used", _HINT)
    return data


def chunks(url: str, limit: int, stop: Stop | None = None) -> Iterator[bytes]:
    """The body of ``url`` as it arrives, in pieces, at most ``limit`` + 1 bytes (so the
    caller sees that there were more than ``limit``); an error answer or a broken
    connection is MirrorError naming the URL, a stop :class:`~vmbuild.signals.Stopped`."""
    if url.startswith("file://"):
        try:
            fd = os.open(url[7:], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise MirrorError(f"cannot read {url}: {exc.strerror}", _HINT) from exc
        yield from _file_pieces(fd, url, limit)
    else:
        yield from _http_pieces(url, limit, stop or Stop())


def _file_pieces(fd: int, url: str, limit: int) -> Generator[bytes]:
    try:
        left = limit + 1
        while left > 0 and (piece := os.read(fd, min(CHUNK, left))):
            left -= len(piece)
            yield piece
    except OSError as exc:
        raise MirrorError(f"cannot read {url}: {exc.strerror}", _HINT) from exc
    finally:
        os.close(fd)


def _http_pieces(url: str, limit: int, stop: Stop) -> Generator[bytes]:
    """At most ``limit`` + 1 bytes of the body of ``url``, as they arrive; the sockets
    of the request are watched by ``stop`` until it ends (then the connection goes back
    to the pool, or is closed when the body was not read to its end)."""
    stop.check()
    watched: list[socket.socket | None] = []
    _CURRENT.stop, _CURRENT.watched = stop, watched
    resp, ended = None, False
    try:
        try:
            resp = _POOL.request("GET", url, preload_content=False, timeout=TIMEOUT)
        except urllib3.exceptions.HTTPError as exc:
            stop.check()
            raise MirrorError(f"cannot reach {url}: {exc}", _HINT) from exc
        finally:
            _CURRENT.stop = _CURRENT.watched = None
        if resp.status != 200:
            raise MirrorError(f"{url} answered HTTP {resp.status}", _HINT)
        left = limit + 1
        while left > 0:
            piece = resp.read1(min(CHUNK, left))
            stop.check()  # (a woken read returns what it had, or nothing)
            if not piece:
                ended = True
                break
            left -= len(piece)
            yield piece
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        stop.check()
        raise MirrorError(f"cannot read {url}: {exc}", _HINT) from exc
    finally:
        for sock in watched:
            stop.unwatch(sock)
        if resp is not None:
            if not ended:
                resp.close()  # the rest unread: the connection is not reused
            resp.release_conn()


def download(
    mirror: str, filename: str, dest: Path, size: int, sha256: str, stop: Stop | None = None
) -> None:
    """Fetch ``mirror/filename`` (``size`` bytes of hash ``sha256``) into ``dest``: into a
    part of this writer's own, hashed as it arrives, renamed into place only when size
    and hash match (:func:`vmbuild.parts.publish`: a copy another process put there
    first is kept). More bytes than ``size`` stop the transfer at once; too many, too
    few or other bytes are MirrorError, and nothing is kept. Nothing is resumed: a
    part belongs to one writer, which removes it whatever happens (a killed writer's
    goes with the next download of the same package)."""
    url = f"{mirror}/{filename}"
    _sweep_once(dest.parent)
    try:
        fd, part = parts.create(dest)
    except OSError as exc:
        raise _cache_error(dest, exc) from exc
    try:
        source = _source(mirror, filename, size, stop)
        h, got = hashlib.sha256(), 0
        with contextlib.closing(source):
            for piece in source:
                got += len(piece)
                if got > size:
                    raise MirrorError(
                        f"{url} is larger than the {size} bytes its index gives; nothing kept",
                        "the mirror serves something else than its index names; check the mirror",
                    )
                h.update(piece)
                _write(fd, piece, dest)
        if got < size:
            raise MirrorError(
                f"{url} ended after {got} of its {size} bytes; nothing kept",
                "the connection broke or the mirror's copy is truncated; try again",
            )
        if h.hexdigest() != sha256:
            raise MirrorError(
                f"{url} does not match its SHA256 (expected {sha256}, got {h.hexdigest()}); "
                "nothing kept",
                "the mirror serves a changed or corrupt file; try again or use another mirror",
            )
        os.fchmod(fd, 0o644)
        parts.publish(part, dest)  # (still locked: another writer's sweep leaves it)
        os.close(fd)
        fd = -1
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise


@functools.cache
def _sweep_once(directory: Path) -> None:
    """The parts of downloads killed before they ended (of any package) go, once a
    process."""
    parts.sweep_dir(directory)


def _source(mirror: str, filename: str, size: int, stop: Stop | None) -> Generator[bytes]:
    """The pieces of ``mirror/filename``; a ``file://`` mirror's file is opened without
    following a link below the mirror's root, so it is never read outside the mirror."""
    if not mirror.startswith("file://"):
        return _http_pieces(f"{mirror}/{filename}", size, stop or Stop())
    try:
        fd = open_beneath(Path(mirror[7:]), filename, mirror)
    except ImageError as exc:
        raise MirrorError(exc.message, _HINT) from None
    except OSError as exc:
        raise MirrorError(f"cannot read {mirror}/{filename}: {exc.strerror}", _HINT) from exc
    return _file_pieces(fd, f"{mirror}/{filename}", size)


def _write(fd: int, data: bytes, dest: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise _cache_error(dest, exc) from exc


def _cache_error(dest: Path, exc: OSError) -> VmbuildError:
    return VmbuildError(
        f"cannot write {dest.parent}: {exc.strerror or exc}",
        "free some space, or set VMBUILD_CACHE_DIR to a writable directory",
    )
