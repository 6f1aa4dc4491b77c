"""Blob downloads: verified while they stream, resumed or retried, cached by digest.

Every byte passes through a :class:`~vmbuild.registry.inflate.Pipe`: it is hashed (the
blob digest) and written to the cache under a temporary name, which is renamed to
``cache_dir()/blobs/sha256/<hex>`` only once the digest matched. A layer is inflated
only once, by the archive writer, straight from the cache into the output (for an
oci-archive, which keeps it compressed, on the side to check its names); its tar
size comes from the blob's own claim (gzip's trailer) and is checked then. What a
layer unpacks to (diff_id, size) is remembered once checked, so a later cache hit
costs no read until the archive is written (where the digest is checked once more).
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from vmbuild import parts
from vmbuild.cache import cache_dir, holds
from vmbuild.errors import RegistryError, VmbuildError
from vmbuild.oci.compress import Compression
from vmbuild.oci.digest import hex_of
from vmbuild.registry import known
from vmbuild.registry.client import Client, Interrupted
from vmbuild.registry.inflate import (
    CHUNK,
    CachedBlob,
    Pipe,
    count_plain,
    guess_plain_size,
    sniff_file,
)
from vmbuild.registry.manifest import Descriptor
from vmbuild.registry.progress import Progress
from vmbuild.registry.reference import Repository

log = logging.getLogger("vmbuild")
RETRIES = 5
BACKOFF = 0.5


def store_dir() -> Path:
    return cache_dir() / "blobs" / "sha256"


def ensure_store() -> Path:
    """The blob store directory, created if need be."""
    path = store_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VmbuildError(
            f"cannot create the blob cache {path}: {exc}",
            "set VMBUILD_CACHE_DIR to a writable directory",
        ) from exc
    return path


def store_path(digest: str) -> Path:
    return store_dir() / hex_of(digest)


def cached(digest: str, size: int) -> Path | None:
    path = store_path(digest)
    try:
        return path if path.stat().st_size == size else None
    except OSError:
        return None


# Another transfer failed or the user interrupted: stop quietly. The client raises it
# too, for a request made or a retry waited for after Client.interrupt().
Cancelled = Interrupted


class Downloader:
    """Fetches blobs of ``repo`` into the cache; ``cancel`` stops every transfer."""

    def __init__(self, client: Client, repo: Repository, progress: Progress, what: str):
        self.client = client
        self.repo = repo
        self.progress = progress
        self.what = what
        self.cancel = threading.Event()
        self.holds = holds()  # (the build's: get runs in threads of their own)

    def get(self, desc: Descriptor, unpack: bool) -> CachedBlob:
        """The blob ``desc`` in the cache (fetched if need be), held for the build; with
        ``unpack``, a view of its layer tar (``diff_id`` is "" while not yet checked)."""
        self.holds.hold(store_path(desc.digest))
        path = cached(desc.digest, desc.size)
        if path is not None:
            info = known.unpacked(desc.digest)
            if info is not None:
                kind, diff_id, size = info
                return CachedBlob(path, desc.digest, kind, desc.size, size, unpack, diff_id)
            if not unpack:
                return CachedBlob(path, desc.digest, sniff_file(path), desc.size, 0, False)
            try:
                return self._verify_cached(desc, path, unpack)
            except _Mismatch:
                log.debug("cached blob %s is corrupt; fetching it again", desc.digest)
                path.unlink(missing_ok=True)
        return self._download(desc, unpack)

    def _verify_cached(self, desc: Descriptor, path: Path, unpack: bool) -> CachedBlob:
        pipe = Pipe(None)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with open(path, "rb") as src:
            while n := src.readinto(buf):
                self._check_cancel()
                pipe.feed(view[:n])
        if pipe.digest != desc.digest:
            raise _Mismatch()
        return self._result(desc, path, pipe, unpack)

    def _result(self, desc: Descriptor, path: Path, pipe: Pipe, unpack: bool) -> CachedBlob:
        kind: Compression = pipe.compression or "none"
        if not unpack:
            return CachedBlob(path, desc.digest, kind, desc.size, 0, False, verified=True)
        if kind == "none":
            known.remember_unpacked(desc.digest, kind, desc.digest, desc.size)
            return CachedBlob(
                path, desc.digest, kind, desc.size, desc.size, True, desc.digest, True
            )
        # The tar's size from the blob's own claim; the writer checks it (and the
        # diff_id) as it inflates the blob into the archive.
        guess = guess_plain_size(path, kind)
        exact = guess is None
        size = count_plain(path, kind) if guess is None else guess
        return CachedBlob(
            path, desc.digest, kind, desc.size, size, True, "", verified=True, size_exact=exact
        )

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _download(self, desc: Descriptor, unpack: bool) -> CachedBlob:
        final = store_path(desc.digest)
        ensure_store()
        name = desc.digest[7:19]
        self.progress.start(name, desc.size)
        tmp: Path | None = None
        try:
            fd, tmp = parts.create(final)  # (a killed pull's swept first)
            with open(fd, "wb") as store:  # (its lock held until it is renamed)
                os.fchmod(fd, 0o644)  # (as the blobs always were)
                pipe = Pipe(store)
                self._stream(desc, pipe, name)
                if pipe.digest != desc.digest:
                    raise RegistryError(
                        f"{self.what}: blob {desc.digest} arrived with digest {pipe.digest}",
                        "the registry's copy is corrupt or was replaced; nothing was kept",
                    )
                store.flush()
                os.replace(tmp, final)
            result = self._result(desc, final, pipe, unpack)
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            self.progress.drop(name)
            if isinstance(exc, OSError):  # network errors were handled in _stream
                raise VmbuildError(
                    f"cannot write to the blob cache: {exc}",
                    "free some space or set VMBUILD_CACHE_DIR to another place",
                ) from exc
            raise
        self.progress.done(name)
        return result

    def _stream(self, desc: Descriptor, pipe: Pipe, name: str) -> None:
        """GET the blob into ``pipe``; after a dropped connection, resume with Range."""
        failures = 0
        url = f"/v2/{self.repo.path}/blobs/{desc.digest}"
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            self._check_cancel()
            start = pipe.size
            headers = {"Range": f"bytes={start}-"} if start else {}
            try:
                resp = self.client.request(
                    "GET",
                    url,
                    scope=f"repository:{self.repo.path}:pull",
                    what=f"{self.what}: blob {desc.digest}",
                    expect=(200, 206),
                    headers=headers,
                )
                skip = start if resp.status == 200 else 0
                self._check_length(resp, desc, start - skip)
                while n := resp.readinto(buf):
                    self._check_cancel()
                    chunk = view[:n]
                    if skip:
                        dropped = min(skip, n)
                        chunk, skip = chunk[dropped:], skip - dropped
                    if pipe.size + len(chunk) > desc.size:
                        self.client.reset()
                        raise RegistryError(
                            f"{self.what}: blob {desc.digest} is larger than the {desc.size} "
                            "bytes its manifest says",
                            "the registry's copy is corrupt; nothing was kept",
                        )
                    pipe.feed(chunk)
                    self.progress.update(name, len(chunk))
                if pipe.size < desc.size and resp.length:
                    # readinto() returns 0 when the connection drops: bytes still owed.
                    raise http.client.IncompleteRead(b"", resp.length)
                if pipe.size < desc.size:
                    raise RegistryError(
                        f"{self.what}: blob {desc.digest} is truncated: the registry sent "
                        f"{pipe.size} of {desc.size} bytes",
                        "the registry's copy is damaged; nothing was kept",
                    )
                return
            except (OSError, http.client.HTTPException) as exc:
                self.client.reset()
                self._check_cancel()  # the socket was shut down to stop us
                failures += 1
                if failures > RETRIES:
                    raise RegistryError(
                        f"{self.what}: blob {desc.digest} failed {failures} times: {exc}",
                        "check the network and the registry, then run again",
                    ) from exc
                log.debug("blob %s: %s; resuming at byte %d", desc.digest, exc, pipe.size)
                self.progress.rewind(name, pipe.size)
                if self.cancel.wait(BACKOFF * 2 ** (failures - 1)):
                    raise Cancelled() from None

    def _check_length(self, resp: http.client.HTTPResponse, desc: Descriptor, start: int) -> None:
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) != desc.size - start:
            self.client.reset()
            raise RegistryError(
                f"{self.what}: blob {desc.digest} is {int(length) + start} bytes at the "
                f"registry, but its manifest says {desc.size}",
                "the registry's copy is truncated or corrupt; nothing was kept",
            )


class _Mismatch(Exception):
    pass


class Fetching:
    """Blobs downloading in parallel; :meth:`get` waits for one. The first failure
    stops the other transfers, and every later :meth:`get` raises that failure."""

    def __init__(self, downloader: Downloader, descs: list[Descriptor], unpack: bool, jobs: int):
        self.downloader = downloader
        self.error: BaseException | None = None
        self.exact_sizes: dict[str, int] = {}  # layer tar sizes found by inflating
        unique = list({d.digest: d for d in descs}.values())
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique) or 1)))
        self.futures: dict[str, Future[CachedBlob]] = {}
        for d in unique:
            fut = self._pool.submit(downloader.get, d, unpack)
            fut.add_done_callback(self._failed)
            self.futures[d.digest] = fut

    def _failed(self, fut: Future[CachedBlob]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None and not isinstance(exc, Cancelled) and self.error is None:
            self.error = exc
            self.downloader.cancel.set()

    def get(self, digest: str) -> CachedBlob:
        try:
            return self.futures[digest].result()
        except Cancelled:
            if self.error is not None:
                raise self.error from None
            raise

    def close(self) -> None:
        """Stop what still runs (at once: blocked reads are woken) and wait for it, so
        no partial file is left behind."""
        self.downloader.cancel.set()
        running = not all(f.done() for f in self.futures.values())
        if running:
            self.downloader.client.interrupt()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if running:
            self.downloader.client.resume()
        self.downloader.cancel.clear()


def get_many(
    downloader: Downloader, descs: list[Descriptor], unpack: bool, jobs: int = 4
) -> dict[str, CachedBlob]:
    """Fetch distinct blobs in parallel and wait for all of them."""
    fetching = Fetching(downloader, descs, unpack, jobs)
    try:
        wait(fetching.futures.values(), return_when=FIRST_EXCEPTION)
        if fetching.error is not None:
            raise fetching.error
        return {digest: fetching.get(digest) for digest in fetching.futures}
    finally:
        fetching.close()
