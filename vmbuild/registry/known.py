"""What earlier pulls and pushes learnt, kept in the cache so later ones can skip work.

- ``layer-blobs``: for a diff_id and a compression, a blob (digest, size) that
  decompresses to it, so an unchanged layer is not compressed again before a push.
- ``blobs/unpacked``: for a verified layer blob, its compression, diff_id and tar size.
- ``registry-seen``: per registry host, a repository known to hold each blob, so a
  push to another repository there can mount the blob instead of uploading it.

Entries are small JSON files replaced atomically; losing one only costs time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

from vmbuild.cache import cache_dir, key, read_json, write_json
from vmbuild.oci.compress import COMPRESSIONS, Compression

_lock = threading.Lock()
SEEN_MAX = 20000  # blobs remembered per registry; the oldest half goes beyond that


def _layer_path(diff_id: str, compression: str) -> Path:
    return cache_dir() / "layer-blobs" / key([diff_id, compression])


def compressed_blob(diff_id: str, compression: str) -> tuple[str, int] | None:
    data = read_json(_layer_path(diff_id, compression))
    if isinstance(data, dict) and isinstance(data.get("digest"), str):
        size = data.get("size")
        if isinstance(size, int):
            return data["digest"], size
    return None


def remember_compressed(diff_id: str, compression: str, digest: str, size: int) -> None:
    write_json(_layer_path(diff_id, compression), {"digest": digest, "size": size})


def _seen_path(host: str) -> Path:
    return cache_dir() / "registry-seen" / key([host])


def seen_in(host: str, digest: str) -> str | None:
    data = read_json(_seen_path(host))
    repo = data.get(digest) if isinstance(data, dict) else None
    return repo if isinstance(repo, str) else None


def remember_seen(host: str, repo: str, digests: list[str]) -> None:
    with _lock:
        path = _seen_path(host)
        data = read_json(path)
        data = data if isinstance(data, dict) else {}
        for digest in digests:  # most recent last
            data.pop(digest, None)
            data[digest] = repo
        if len(data) > SEEN_MAX:
            data = dict(list(data.items())[-SEEN_MAX // 2 :])
        write_json(path, data)


def _unpacked_path(digest: str) -> Path:
    return cache_dir() / "blobs" / "unpacked" / key([digest])


def unpacked(digest: str) -> tuple[Compression, str, int] | None:
    """(compression, diff_id, tar size) of a verified layer blob, if known."""
    data = read_json(_unpacked_path(digest))
    if not isinstance(data, dict):
        return None
    kind, diff_id, size = data.get("compression"), data.get("diffId"), data.get("size")
    if kind in COMPRESSIONS and isinstance(diff_id, str) and isinstance(size, int):
        return cast(Compression, kind), diff_id, size
    return None


def remember_unpacked(digest: str, compression: str, diff_id: str, size: int) -> None:
    data = {"compression": compression, "diffId": diff_id, "size": size}
    write_json(_unpacked_path(digest), data)
