"""HTTP for a package mirror (urllib3): small bodies read whole, files streamed into a
``.part`` name (resumed with a Range request) and renamed once their hash is checked."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import urllib3

from vmbuild.errors import VmbuildError

MAX_INDEX = 512 << 20
CHUNK = 1 << 20
_HINT = "check the [debian] mirror (or the host's apt sources) and the network"
_POOL = urllib3.PoolManager(
    num_pools=4, maxsize=8, retries=urllib3.Retry(3, backoff_factor=0.3, redirect=5)
)


class MirrorError(VmbuildError):
    """A mirror cannot be reached, answers an error, or serves what does not match."""


def get(url: str) -> bytes:
    """The body of ``url`` (an index), or MirrorError naming the URL."""
    data = b"".join(chunks(url, MAX_INDEX))
    if len(data) > MAX_INDEX:
        raise MirrorError(f"{url} is larger than {MAX_INDEX} bytes", _HINT)
    return data


def chunks(url: str, limit: int) -> Iterator[bytes]:
    """The body of ``url`` as it arrives, in pieces, ending early once more than
    ``limit`` bytes came (the caller's size check then fails); an error answer or a
    broken connection is MirrorError naming the URL."""
    if url.startswith("file://"):
        try:
            with open(url[7:], "rb") as f:
                while piece := f.read(min(CHUNK, limit + 1)):
                    yield piece
                    limit -= len(piece)
                    if limit < 0:
                        return
            return
        except OSError as exc:
            raise MirrorError(f"cannot read {url}: {exc.strerror}", _HINT) from exc
    try:
        resp = _POOL.request("GET", url, preload_content=False, timeout=60)
    except urllib3.exceptions.HTTPError as exc:
        raise MirrorError(f"cannot reach {url}: {exc}", _HINT) from exc
    try:
        if resp.status != 200:
            raise MirrorError(f"{url} answered HTTP {resp.status}", _HINT)
        for piece in resp.stream(CHUNK):
            yield piece
            limit -= len(piece)
            if limit < 0:
                return
    except urllib3.exceptions.HTTPError as exc:
        raise MirrorError(f"cannot read {url}: {exc}", _HINT) from exc
    finally:
        resp.release_conn()


def download(url: str, dest: Path, size: int, sha256: str) -> None:
    """Fetch ``url`` into ``dest`` (``size`` bytes of hash ``sha256``): written as
    ``dest.part`` (a partial one resumed) and hashed as it arrives, renamed into place
    only when it matches; one that does not match is deleted and MirrorError names it."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if url.startswith("file://"):
        shutil.copyfile(url[7:], part)
        got = file_sha256(part)
    elif have < size:
        h = _sha256_of(part) if have else hashlib.sha256()
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = _POOL.request("GET", url, headers=headers, preload_content=False, timeout=60)
        except urllib3.exceptions.HTTPError as exc:
            raise MirrorError(f"cannot reach {url}: {exc}", _HINT) from exc
        try:
            if resp.status not in (200, 206):
                raise MirrorError(f"{url} answered HTTP {resp.status}", _HINT)
            if resp.status == 200:
                h = hashlib.sha256()
            with open(part, "ab" if resp.status == 206 else "wb") as f:
                for chunk in resp.stream(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise MirrorError(f"cannot read {url}: {exc}", _HINT) from exc
        finally:
            resp.release_conn()
        got = h.hexdigest()
    else:
        got = file_sha256(part)
    if got != sha256:
        part.unlink(missing_ok=True)
        raise MirrorError(
            f"{url} does not match its SHA256 (expected {sha256}, got {got}); nothing kept",
            "the mirror serves a changed or corrupt file; try again or use another mirror",
        )
    os.replace(part, dest)


def _sha256_of(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h


def file_sha256(path: Path) -> str:
    return _sha256_of(path).hexdigest()
