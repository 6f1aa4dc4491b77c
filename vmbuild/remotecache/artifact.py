"""Cache entries as OCI 1.1 artifacts in a registry: put one, get one.

An entry is an image manifest with ``artifactType`` :data:`ARTIFACT_TYPE`, a small JSON
config (:data:`CONFIG_TYPE`: the entry's kind, its key, and what the key maps to) and
the entry's files as gzip layers, tagged ``KIND-KEY``. The layers are the same blobs an
image of those layers would have (``vmbuild push`` compresses a layer once and remembers
the result by diff_id), so the registry keeps no second copy. Two writers of one key
send the same bytes (the config holds no time, no host): both succeed.

Getting an entry trusts nothing it has not checked: the manifest must be vmbuild's
artifact, the config must hash to its descriptor, parse, and name the key asked for;
every blob is verified as it streams into the blob cache (:mod:`vmbuild.registry.blobs`)
and each file is inflated while its diff_id is checked. Anything else is
:class:`BadEntry`, which the caller turns into a miss and one warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vmbuild.errors import ImageError, RegistryError
from vmbuild.oci.compress import decompressor
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import BlobRef, Layer, canonical_json
from vmbuild.oci.layout import MT_OCI_LAYER, MT_OCI_MANIFEST
from vmbuild.registry import blobs
from vmbuild.registry.client import Client
from vmbuild.registry.manifest import Descriptor, Manifest, parse
from vmbuild.registry.progress import Silent
from vmbuild.registry.push import Blob, Pusher, _compress
from vmbuild.registry.reference import Reference, Repository

ARTIFACT_TYPE = "application/vnd.vmbuild.cache.v1"
CONFIG_TYPE = "application/vnd.vmbuild.cache.config.v1+json"
LAYER_TYPE = MT_OCI_LAYER + "+gzip"
FORMAT = 1
MAX_CONFIG = 1 << 20


class BadEntry(Exception):
    """The entry is corrupt, truncated, foreign or malformed: a miss."""


@dataclass(frozen=True)
class File:
    """One file of an entry: an uncompressed tar and its sha256 (``diff_id``)."""

    path: Path
    diff_id: str


def tag_for(kind: str, key: str) -> str:
    return f"{kind}-{key}"


def _config(kind: str, key: str, files: list[File], meta: dict[str, Any]) -> bytes:
    return canonical_json(
        {
            "vmbuildCache": FORMAT,
            "kind": kind,
            "key": key,
            "diffIds": [f.diff_id for f in files],
            "meta": meta,
        }
    )


def put(
    client: Client, repo: Repository, kind: str, key: str, files: list[File], meta: dict[str, Any]
) -> bool:
    """Push the entry unless the registry has it; True when it was sent."""
    dest = Reference(repo, tag_for(kind, key))
    if _exists(client, repo, dest.reference):
        return False
    pusher = Pusher(client, dest, Silent())
    pusher.what = f"cache push to {dest}"
    stop = threading.Event()
    layers = [
        _compress(Layer(f.diff_id, BlobRef.whole(f.path), "none", f.diff_id), "gzip", None, stop)
        for f in files
    ]
    config = _config(kind, key, files, meta)
    config_blob = Blob(of_bytes(config), len(config), CONFIG_TYPE, data=config)
    for blob in [config_blob, *layers]:
        pusher.ensure(blob)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_blob.digest, "size": len(config)},
            "layers": [
                {"mediaType": LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers
            ],
            "annotations": {"dev.vmbuild.cache.key": key, "dev.vmbuild.cache.kind": kind},
        }
    )
    pusher.put_manifest(manifest)
    return True


def _exists(client: Client, repo: Repository, reference: str) -> bool:
    resp = client.head(
        f"/v2/{repo.path}/manifests/{reference}",
        scope=f"repository:{repo.path}:pull,push",
        what=f"cache {repo}:{reference}",
        accept=MT_OCI_MANIFEST,
    )
    return resp.status == 200


def _manifest(client: Client, repo: Repository, reference: str) -> Manifest | None:
    what = f"cache {repo}:{reference}"
    resp = client.request(
        "GET",
        f"/v2/{repo.path}/manifests/{reference}",
        scope=f"repository:{repo.path}:pull",
        what=what,
        expect=(200, 404),
        headers={"Accept": MT_OCI_MANIFEST},
    )
    if resp.status == 404:
        resp.discard()
        return None
    raw = resp.read(MAX_CONFIG + 1)
    if len(raw) > MAX_CONFIG:
        client.reset()
        raise BadEntry(f"{what}: the manifest is larger than 1 MiB")
    try:
        found = parse(raw, resp.getheader("Content-Type") or "", of_bytes(raw), what)
        kind = json.loads(raw).get("artifactType")
    except (RegistryError, ValueError, AttributeError) as exc:
        raise BadEntry(f"{what}: not a vmbuild cache entry ({exc})") from exc
    if not isinstance(found, Manifest) or kind != ARTIFACT_TYPE:
        raise BadEntry(f"{what}: not a vmbuild cache entry (artifactType {kind!r})")
    if found.config.media_type != CONFIG_TYPE or found.config.size > MAX_CONFIG:
        raise BadEntry(f"{what}: not a vmbuild cache entry (config {found.config.media_type})")
    return found


@dataclass(frozen=True)
class Got:
    files: list[File]  # uncompressed, in ``workdir``: the caller moves them into its cache
    meta: dict[str, Any]


def get(
    client: Client, repo: Repository, kind: str, key: str, workdir: Path, *, layers: bool
) -> Got | None:
    """The entry ``KIND-KEY``, every byte checked; None when the registry has none. With
    ``layers``, each file is a layer for an image: checked as every layer vmbuild reads
    is (:func:`vmbuild.oci.layercheck.check_layer`: a whole tar, no unsafe name)."""
    reference = tag_for(kind, key)
    manifest = _manifest(client, repo, reference)
    if manifest is None:
        return None
    what = f"cache {repo}:{reference}"
    downloader = blobs.Downloader(client, repo, Silent(), what)
    try:
        raw = downloader.get(manifest.config, False).path.read_bytes()
        if of_bytes(raw) != manifest.config.digest:
            raise BadEntry(f"{what}: the config does not match its digest")
        config = json.loads(raw)
        diff_ids = config["diffIds"]
        meta = config["meta"]
        ok = (
            config.get("vmbuildCache") == FORMAT
            and config.get("kind") == kind
            and config.get("key") == key
            and isinstance(diff_ids, list)
            and len(diff_ids) == len(manifest.layers)
            and all(isinstance(d, str) and d.startswith("sha256:") for d in diff_ids)
            and isinstance(meta, dict)
        )
        if not ok:
            raise BadEntry(f"{what}: the config is not this key's entry")
        files = []
        for i, (desc, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
            blob = downloader.get(desc, False)
            dest = workdir / f"{i}.tar"
            files.append(_inflate(blob.path, desc, diff_id, dest, f"{what}: layer {i + 1}", layers))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadEntry(f"{what}: the config does not parse ({exc})") from exc
    except RegistryError as exc:
        if "digest" in exc.message or "truncated" in exc.message or "larger" in exc.message:
            raise BadEntry(exc.message) from exc
        raise
    return Got(files, meta)


def _inflate(
    blob: Path, desc: Descriptor, diff_id: str, dest: Path, what: str, layer: bool
) -> File:
    """Inflate a verified blob into ``dest``, checking it hashes to ``diff_id`` (and,
    for a ``layer``, that it is one: :func:`~vmbuild.oci.layercheck.check_layer`)."""
    fd, tmp = tempfile.mkstemp(prefix=".inflate-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(blob, "rb") as src:
            got = _layer_check(src, out, what) if layer else _plain_hash(src, out, desc, what)
        if got != diff_id:
            raise BadEntry(f"{what}: {desc.digest} does not unpack to {diff_id}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return File(dest, diff_id)


def _layer_check(src: BinaryIO, out: BinaryIO, what: str) -> str:
    from vmbuild.oci.layercheck import check_layer

    try:
        return check_layer(src, "gzip", what, plain=out).diff_id
    except ImageError as exc:  # not a tar, an unsafe name: the entry is bad, not vmbuild
        raise BadEntry(exc.message) from exc


def _plain_hash(src: BinaryIO, out: BinaryIO, desc: Descriptor, what: str) -> str:
    h = hashlib.sha256()
    try:
        with decompressor(src, "gzip") as plain:
            while chunk := plain.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except Exception as exc:  # not gzip, truncated: the entry is bad, not vmbuild
        raise BadEntry(f"{what}: {desc.digest} does not inflate ({exc})") from exc
    return "sha256:" + h.hexdigest()
