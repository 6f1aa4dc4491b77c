"""Pushing an image's referrer artifacts (its SBOM, its provenance) after the image.

Each artifact manifest is sent by digest with the pushed image manifest as its
``subject``. A registry with the OCI 1.1 referrers API answers with ``OCI-Subject`` and
lists them itself; for one without it (Debian's docker-registry 2.8) the artifacts are
listed in the image index tagged ``sha256-<hex of the subject>`` (the fallback tag
scheme), merged with whatever that tag already listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import MT_OCI_INDEX
from vmbuild.oci.referrers import (
    EMPTY,
    MT_EMPTY,
    Artifact,
    Found,
    artifact_manifest,
    fallback_tag,
    index_entry,
    referrers_index,
)

if TYPE_CHECKING:
    from vmbuild.registry.push import Pusher

MAX_INDEX = 4 << 20


def push_referrers(pusher: Pusher, found: Sequence[Found], subject: dict[str, Any]) -> None:
    from vmbuild.registry.push import Blob

    pusher.ensure(Blob(of_bytes(EMPTY), len(EMPTY), MT_EMPTY, data=EMPTY))
    entries = []
    listed = True
    for f in found:
        artifact = Artifact(f.artifact_type, f.data, f.annotations)
        pusher.ensure(Blob(of_bytes(f.data), len(f.data), f.artifact_type, data=f.data))
        manifest = artifact_manifest(artifact, subject)
        pusher.put_manifest(manifest, of_bytes(manifest))
        listed = listed and pusher.subject_seen
        entries.append(index_entry(artifact, manifest))
    if listed:
        return
    tag = fallback_tag(subject["digest"])
    merged = _existing(pusher, tag)
    have = {e.get("digest") for e in merged}
    merged += [e for e in entries if e["digest"] not in have]
    pusher.put_manifest(referrers_index(merged), tag, MT_OCI_INDEX)


def _existing(pusher: Pusher, tag: str) -> list[dict[str, Any]]:
    """The manifests the fallback tag lists already (none if it does not exist)."""
    resp = pusher.client.request(
        "GET",
        f"/v2/{pusher.repo}/manifests/{tag}",
        scope=f"repository:{pusher.repo}:pull,push",
        what=f"{pusher.what}: referrers tag {tag}",
        expect=(200, 404),
        headers={"Accept": MT_OCI_INDEX},
    )
    body = resp.read(MAX_INDEX + 1)
    if resp.status != 200 or len(body) > MAX_INDEX:
        return []
    try:
        value = json.loads(body)
    except ValueError:
        return []
    manifests = value.get("manifests") if isinstance(value, dict) else None
    return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
