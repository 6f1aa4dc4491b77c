"""The step cache: a root step's resulting layer, kept under its inputs' key.

A runAsRoot step whose inputs are unchanged (the base layers' diff_ids, copyToRoot's
content, the scripts, uid/gid, the guest's tools and kernel recipe: the caller lists
them) does not boot the build VM: its new layer comes from
``cache_dir()/steps/<key>/``, which holds ``layer.tar`` (the uncompressed layer) and
``meta.json`` (its diff_id and whatever the caller recorded); ``$VMBUILD_STEP_CACHE``
names another directory for them (the tests give each test its own). Entries are published
atomically (a temporary sibling renamed into place), so concurrent identical builds
both succeed; an entry whose ``layer.tar`` does not hash to its recorded diff_id
(corrupt, truncated, half-copied by hand) or holds a name no layer may (``..``, an
absolute path: forged; one warning) is never used: :func:`lookup` misses and the
next :func:`publish` replaces it (as it does anything else in its place). An entry
found or published is held for the build (:func:`vmbuild.cache.hold`): a prune leaves
it until the build ends. A step cache that cannot be written (a file where its
directory goes, a full disk) costs one warning, never the build: the step's layer is
then used from where it was made. ``vmbuild build --no-cache`` skips lookups
(:func:`disabled`); the result is still published.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vmbuild import cache
from vmbuild.errors import ImageError

log = logging.getLogger("vmbuild")

KIND = "steps"
LAYER = "layer.tar"
META = "meta.json"
FORMAT = "vmbuild-step-cache-1"
ENV = "VMBUILD_STEP_CACHE"
_enabled: ContextVar[bool] = ContextVar("vmbuild_step_cache", default=True)


class Remote(Protocol):
    """Remote caches behind this one (:mod:`vmbuild.remotecache` implements it)."""

    def fetch(self, key: str) -> bool:
        """On a local miss: bring ``key``'s entry into the local cache; whether it did."""
        ...

    def offer(self, key: str, step: CachedStep) -> None:
        """A local entry was used or made: the remote caches may want it."""
        ...


_remote: ContextVar[Remote | None] = ContextVar("vmbuild_step_remote", default=None)


@contextlib.contextmanager
def remote(source: Remote | None) -> Iterator[None]:
    """Ask ``source`` on a local miss, and offer it every entry, within the block."""
    token = _remote.set(source)
    try:
        yield
    finally:
        _remote.reset(token)


def step_key(inputs: Mapping[str, object]) -> str:
    """The sha256 (hex) of the canonical JSON of every input (and the entry format)."""
    doc = json.dumps(
        {"format": FORMAT, "inputs": inputs},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class CachedStep:
    layer: Path  # the uncompressed layer tar, inside the cache
    diff_id: str  # "sha256:..." of ``layer``
    meta: dict[str, object]


def root() -> Path:
    """Where the entries live: ``$VMBUILD_STEP_CACHE``, else ``cache_dir()/steps``."""
    explicit = os.environ.get(ENV)
    return Path(explicit) if explicit else cache.cache_dir() / KIND


def entry(key: str) -> Path:
    return root() / key


def enabled() -> bool:
    return _enabled.get()


@contextlib.contextmanager
def disabled(off: bool = True) -> Iterator[None]:
    """With ``off``, no lookup in the block finds anything (``--no-cache``)."""
    token = _enabled.set(not off)
    try:
        yield
    finally:
        _enabled.reset(token)


def _checked(layer: Path, diff_id: str, where: Path) -> bool:
    """Whether ``layer`` hashes to ``diff_id`` and is a layer vmbuild may write into an
    image: read once by the check every layer vmbuild reads gets
    (:func:`vmbuild.oci.layercheck.check_layer`: a whole tar, no unsafe name). An entry
    forged to hold ``..`` or absolute names is a miss with one warning."""
    from vmbuild.oci.layercheck import check_layer

    with open(layer, "rb") as f:
        try:
            got = check_layer(f, "none", f"step cache entry {where}")
        except ImageError as exc:
            if _sha256_file(layer) == diff_id:  # (else merely corrupt: a quiet miss)
                warnings.warn(f"ignoring it: {exc.message}", UserWarning, 2)
            return False
    return got.diff_id == diff_id


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _read(where: Path) -> CachedStep | None:
    try:
        meta = json.loads((where / META).read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            return None
        diff_id = meta.get("diff_id")
        layer = where / LAYER
        if not isinstance(diff_id, str) or not _checked(layer, diff_id, where):
            return None
    except (OSError, ValueError):
        return None
    extra = meta.get("meta")
    return CachedStep(layer, diff_id, dict(extra) if isinstance(extra, dict) else {})


def lookup(key: str) -> CachedStep | None:
    """The entry for ``key``; None on a miss, a corrupt entry, or under :func:`disabled`.
    A local miss asks the remote caches (:func:`remote`), if any."""
    if not enabled():
        return None
    found = _lookup_local(key)
    source = _remote.get()
    if found is None and source is not None and source.fetch(key):
        found = _lookup_local(key)
    if found is not None and source is not None:
        source.offer(key, found)
    return found


def _lookup_local(key: str) -> CachedStep | None:
    found_at = entry(key)
    try:
        cache.hold(found_at)
    except (OSError, cache.CacheError):  # (publish says why, if the step is published)
        return None
    if not found_at.is_dir():
        return None
    found = _read(found_at)
    if found is None:
        log.debug("step cache: ignoring the corrupt entry %s", found_at)
    return found


def _place(layer: Path, dest: Path) -> None:
    try:
        os.link(layer, dest)  # same file system: no copy
    except OSError:
        shutil.copyfile(layer, dest)


def _publish_once(final: Path, layer: Path, diff_id: str, meta: Mapping[str, object]) -> None:
    cache.directory(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:12]}-", dir=final.parent))
    try:
        _place(layer, tmp / LAYER)
        doc = {"format": FORMAT, "diff_id": diff_id, "meta": dict(meta)}
        (tmp / META).write_text(json.dumps(doc, sort_keys=True, default=str) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(key: str, layer: Path, diff_id: str, meta: Mapping[str, object]) -> CachedStep:
    """Store ``layer`` (uncompressed, hashing to ``diff_id``) as the entry for ``key``.

    Atomic and safe under concurrent builds: whoever renames first wins, the others
    drop their copy. A corrupt entry (or anything else) in the way is replaced. Returns
    the stored entry; when it cannot be stored, a warning says why and the entry is
    ``layer`` itself (the build goes on).
    """
    final = entry(key)
    why = "it is not kept"
    try:
        cache.hold(final)
        for _ in range(3):
            if os.path.lexists(final) and _read(final) is None:
                cache.discard(final)
            _publish_once(final, layer, diff_id, meta)
            stored = _read(final)
            if stored is not None:
                source = _remote.get()
                if source is not None:
                    source.offer(key, stored)
                return stored
    except cache.CacheError as exc:
        why = f"{exc.message} ({exc.hint})"
    except OSError as exc:
        why = f"{exc.strerror or exc} ({exc.filename or final})"
    warnings.warn(
        f"the step cache cannot keep this step's layer: {why}; the build goes on without it",
        UserWarning,
        2,
    )
    return CachedStep(layer, diff_id, dict(meta))
