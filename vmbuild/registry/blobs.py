"""Blob downloads: verified while they stream, resumed or retried, cached by digest.

Every byte passes through a :class:`~vmbuild.registry.inflate.Pipe`: it is hashed (the
blob digest) and written to the cache under a temporary name; a layer is also inflated
on the way to learn its diff_id and tar size (the tar itself is not written: the
archive writer inflates the cached blob again, straight into the output). A blob is
published into the cache (``cache_dir()/blobs/sha256/<hex>``) only once its digest
matched; what its layer unpacks to is remembered beside it, so a cache hit costs no
read until the archive is written (where the digest is checked once more).
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path

from vmbuild.cache import cache_dir
from vmbuild.errors import RegistryError
from vmbuild.oci.compress import Compression
from vmbuild.oci.digest import hex_of
from vmbuild.registry import known
from vmbuild.registry.client import Client
from vmbuild.registry.inflate import CHUNK, CachedBlob, Pipe, sniff_file
from vmbuild.registry.manifest import Descriptor
from vmbuild.registry.progress import Progress
from vmbuild.registry.reference import Repository

log = logging.getLogger("vmbuild")
RETRIES = 5
BACKOFF = 0.5


def store_dir() -> Path:
    return cache_dir() / "blobs" / "sha256"


def store_path(digest: str) -> Path:
    return store_dir() / hex_of(digest)


def cached(digest: str, size: int) -> Path | None:
    path = store_path(digest)
    try:
        return path if path.stat().st_size == size else None
    except OSError:
        return None


class Cancelled(Exception):
    """Another transfer failed or the user interrupted: stop quietly."""


class Downloader:
    """Fetches blobs of ``repo`` into the cache; ``cancel`` stops every transfer."""

    def __init__(self, client: Client, repo: Repository, progress: Progress, what: str):
        self.client = client
        self.repo = repo
        self.progress = progress
        self.what = what
        self.cancel = threading.Event()

    def get(self, desc: Descriptor, unpack: bool) -> CachedBlob:
        """The blob ``desc`` in the cache (fetched if need be); with ``unpack``, a view of
        its layer tar, whose diff_id is ``known.unpacked(digest)``."""
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
        pipe = Pipe(None, unpack)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with open(path, "rb") as src:
            while n := src.readinto(buf):
                self._check_cancel()
                pipe.feed(view[:n])
        pipe.finish()
        if pipe.digest != desc.digest:
            raise _Mismatch()
        return self._result(desc, path, pipe, unpack)

    def _result(self, desc: Descriptor, path: Path, pipe: Pipe, unpack: bool) -> CachedBlob:
        kind: Compression = pipe.compression or "none"
        if pipe.inflate_error is not None:
            raise RegistryError(
                f"{self.what}: layer {desc.digest} does not decompress ({pipe.inflate_error})",
                "the image is corrupt",
            )
        plain_size = pipe.plain_size if kind != "none" else desc.size
        if unpack:
            known.remember_unpacked(desc.digest, kind, pipe.diff_id, plain_size)
            if kind != "none":
                known.remember_compressed(pipe.diff_id, kind, desc.digest, desc.size)
        if not unpack:
            return CachedBlob(path, desc.digest, kind, desc.size, 0, False)
        return CachedBlob(path, desc.digest, kind, desc.size, plain_size, True, pipe.diff_id)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _download(self, desc: Descriptor, unpack: bool) -> CachedBlob:
        final = store_path(desc.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.part")
        name = desc.digest[7:19]
        self.progress.start(name, desc.size)
        try:
            with open(tmp, "wb") as store:
                pipe = Pipe(store, unpack)
                self._stream(desc, pipe, name)
                pipe.finish()
            if pipe.digest != desc.digest:
                raise RegistryError(
                    f"{self.what}: blob {desc.digest} arrived with digest {pipe.digest}",
                    "the registry's copy is corrupt or was replaced; nothing was kept",
                )
            result = self._result(desc, final, pipe, unpack)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            self.progress.drop(name)
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
                failures += 1
                if failures > RETRIES:
                    raise RegistryError(
                        f"{self.what}: blob {desc.digest} failed {failures} times: {exc}",
                        "check the network and the registry, then run again",
                    ) from exc
                log.debug("blob %s: %s; resuming at byte %d", desc.digest, exc, pipe.size)
                self.progress.rewind(name, pipe.size)
                time.sleep(BACKOFF * 2 ** (failures - 1))

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


def get_many(
    downloader: Downloader, descs: list[Descriptor], unpack: bool, jobs: int = 4
) -> dict[str, CachedBlob]:
    """Fetch distinct blobs in parallel; the first failure (or Ctrl-C) stops the others."""
    unique = list({d.digest: d for d in descs}.values())
    result: dict[str, CachedBlob] = {}
    if not unique:
        return result
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique))))
    futures: dict[Future[CachedBlob], Descriptor] = {}
    try:
        for d in unique:
            futures[pool.submit(downloader.get, d, unpack)] = d
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            exc = fut.exception()
            if exc is not None:
                raise exc
        for fut, d in futures.items():
            result[d.digest] = fut.result()
        return result
    finally:
        downloader.cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        downloader.cancel.clear()
