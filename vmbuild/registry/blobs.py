"""Blob downloads: verified while they stream, resumed or retried, cached by digest.

Every byte passes through a :class:`Pipe`: it is hashed (the blob digest), written to the
cache under a temporary name, and, when the caller wants the uncompressed layer,
inflated and hashed again (the diff_id). A blob is published into the cache
(``cache_dir()/blobs/sha256/<hex>``) only once its digest matched. A blob already in the
cache is read from there through the same pipe, so it is verified again on every use.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard
from isal import isal_zlib

from vmbuild.cache import cache_dir
from vmbuild.errors import RegistryError
from vmbuild.oci.compress import Compression, sniff
from vmbuild.oci.digest import hex_of
from vmbuild.registry.client import Client
from vmbuild.registry.manifest import Descriptor
from vmbuild.registry.progress import Progress
from vmbuild.registry.reference import Repository

log = logging.getLogger("vmbuild")
CHUNK = 1 << 20
OUT_CHUNK = 8 << 20
RETRIES = 5
# isal's stub types ``error`` as an instance; it is the exception class IsalError.
INFLATE_ERRORS: tuple[type[Exception], ...] = (
    cast(type[Exception], isal_zlib.error),
    zstandard.ZstdError,
)
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


class _Inflater(Protocol):
    def feed(self, data: memoryview) -> None: ...
    def finish(self) -> None: ...


class _Gunzip:
    """Inflates gzip (any number of members) into ``write``, bounded output per step."""

    def __init__(self, write: Callable[[bytes], object]):
        self._write = write
        self._d = isal_zlib.decompressobj(31)

    def feed(self, data: memoryview | bytes) -> None:
        while data:
            out = self._d.decompress(data, OUT_CHUNK)
            self._write(out)
            data = self._d.unconsumed_tail
            while data and not self._d.eof:
                self._write(self._d.decompress(data, OUT_CHUNK))
                data = self._d.unconsumed_tail
            if self._d.eof:
                rest = self._d.unused_data
                self._d = isal_zlib.decompressobj(31)
                if rest.strip(b"\0"):
                    data = rest
                else:
                    return

    def finish(self) -> None:
        tail = self._d.flush()
        if tail:
            self._write(tail)


class _Unzstd:
    def __init__(self, write: Callable[[bytes], object]):
        sink = cast(BinaryIO, _Writer(write))
        dctx = zstandard.ZstdDecompressor()
        self._w = dctx.stream_writer(sink, write_size=OUT_CHUNK, closefd=False)

    def feed(self, data: memoryview | bytes) -> None:
        self._w.write(data)

    def finish(self) -> None:
        pass  # the writer passes on what it inflates as it goes


class _Writer:
    def __init__(self, write: Callable[[bytes], object]):
        self.write = write


@dataclass(frozen=True)
class Fetched:
    """A verified blob in the cache and, if asked for, its uncompressed layer."""

    path: Path
    digest: str
    size: int
    compression: Compression
    plain: Path | None = None
    diff_id: str | None = None
    plain_size: int = 0


class Pipe:
    """Hashes a blob's bytes and passes them on to the cache file and the inflater."""

    def __init__(self, store: BinaryIO | None, plain: BinaryIO | None):
        self._store = store
        self._plain = plain
        self.hash = hashlib.sha256()
        self.size = 0
        self.compression: Compression | None = None
        self._inflate: _Inflater | None = None
        self.diff_hash = hashlib.sha256()
        self.plain_size = 0
        self.inflate_error: str | None = None

    def _write_plain(self, data: bytes) -> None:
        if data:
            self.diff_hash.update(data)
            self.plain_size += len(data)
            assert self._plain is not None
            self._plain.write(data)

    def feed(self, data: memoryview) -> None:
        if self.compression is None:
            self.compression = sniff(bytes(data[:4]))
            if self._plain is not None and self.compression == "gzip":
                self._inflate = _Gunzip(self._write_plain)
            elif self._plain is not None and self.compression == "zstd":
                self._inflate = _Unzstd(self._write_plain)
        self.hash.update(data)
        self.size += len(data)
        if self._store is not None:
            self._store.write(data)
        if self._inflate is not None:
            try:
                self._inflate.feed(data)
            except INFLATE_ERRORS as exc:
                self._inflate, self.inflate_error = None, str(exc)

    def finish(self) -> None:
        if self._inflate is not None:
            try:
                self._inflate.finish()
            except INFLATE_ERRORS as exc:
                self._inflate, self.inflate_error = None, str(exc)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class Downloader:
    """Fetches blobs of ``repo`` into the cache; ``cancel`` stops every transfer."""

    def __init__(self, client: Client, repo: Repository, progress: Progress, what: str):
        self.client = client
        self.repo = repo
        self.progress = progress
        self.what = what
        self.cancel = threading.Event()

    def get(self, desc: Descriptor, plain: Path | None) -> Fetched:
        """The blob ``desc`` (from the cache or the registry), verified; with ``plain``,
        its uncompressed bytes are written there too (an uncompressed blob is not copied)."""
        path = cached(desc.digest, desc.size)
        if path is not None:
            with contextlib.suppress(_Mismatch):
                return self._from_cache(desc, path, plain)
            log.debug("cached blob %s is corrupt; fetching it again", desc.digest)
            path.unlink(missing_ok=True)
        return self._download(desc, plain)

    def _from_cache(self, desc: Descriptor, path: Path, plain: Path | None) -> Fetched:
        with open(path, "rb") as src, _maybe_open(plain) as out:
            pipe = Pipe(None, out)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := src.readinto(buf):
                self._check_cancel()
                pipe.feed(view[:n])
            pipe.finish()
        if pipe.digest != desc.digest:
            raise _Mismatch()
        return self._result(desc, path, pipe, plain)

    def _result(self, desc: Descriptor, path: Path, pipe: Pipe, plain: Path | None) -> Fetched:
        kind = pipe.compression or "none"
        if pipe.inflate_error is not None:
            raise RegistryError(
                f"{self.what}: layer {desc.digest} does not decompress ({pipe.inflate_error})",
                "the image is corrupt",
            )
        if plain is None:
            return Fetched(path, desc.digest, desc.size, kind)
        if kind == "none":
            with contextlib.suppress(FileNotFoundError):
                plain.unlink()
            return Fetched(path, desc.digest, desc.size, kind, path, desc.digest, desc.size)
        diff_id = "sha256:" + pipe.diff_hash.hexdigest()
        return Fetched(path, desc.digest, desc.size, kind, plain, diff_id, pipe.plain_size)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _download(self, desc: Descriptor, plain: Path | None) -> Fetched:
        final = store_path(desc.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.part")
        name = desc.digest[7:19]
        self.progress.start(name, desc.size)
        try:
            with open(tmp, "wb") as store, _maybe_open(plain) as out:
                pipe = Pipe(store, out)
                self._stream(desc, pipe, name)
                pipe.finish()
            if pipe.digest != desc.digest:
                raise RegistryError(
                    f"{self.what}: blob {desc.digest} arrived with digest {pipe.digest}",
                    "the registry's copy is corrupt or was replaced; nothing was kept",
                )
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            self.progress.drop(name)
            raise
        self.progress.done(name)
        return self._result(desc, final, pipe, plain)

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


@contextlib.contextmanager
def _maybe_open(path: Path | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
    else:
        with open(path, "wb") as f:
            yield f


def get_many(
    downloader: Downloader, descs: list[Descriptor], plain_dir: Path | None, jobs: int = 4
) -> dict[str, Fetched]:
    """Fetch distinct blobs in parallel; the first failure (or Ctrl-C) stops the others."""
    from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

    unique = list({d.digest: d for d in descs}.values())
    result: dict[str, Fetched] = {}
    if not unique:
        return result
    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique))))
    futures: dict[Future[Fetched], Descriptor] = {}
    try:
        for d in unique:
            plain = plain_dir / hex_of(d.digest) if plain_dir is not None else None
            futures[pool.submit(downloader.get, d, plain)] = d
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            if fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]
        done, _ = wait(futures)
        for fut, d in futures.items():
            result[d.digest] = fut.result()
        return result
    finally:
        downloader.cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        downloader.cancel.clear()
