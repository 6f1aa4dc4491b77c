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
from typing import Any, Protocol

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.layout import MT_OCI_EMPTY, MT_OCI_INDEX
from vmbuild.oci.referrers import (
    EMPTY,
    Artifact,
    Found,
    artifact_manifest,
    fallback_tag,
    index_entry,
    referrers_index,
)

MAX_INDEX = 4 << 20


class Sender(Protocol):
    """What pushing referrers needs of a push (:class:`vmbuild.registry.push.Pusher`)."""

    subject_seen: bool

    def send_bytes(self, data: bytes, media_type: str) -> None: ...

    def put_manifest(
        self, manifest: bytes, reference: str | None = None, media_type: str = ...
    ) -> str: ...

    def get_manifest(self, reference: str, accept: str, limit: int) -> bytes | None: ...


def push_referrers(pusher: Sender, found: Sequence[Found], subject: dict[str, Any]) -> None:
    pusher.send_bytes(EMPTY, MT_OCI_EMPTY)
    entries = []
    listed = True
    for f in found:
        artifact = Artifact(f.artifact_type, f.data, f.annotations)
        pusher.send_bytes(f.data, f.artifact_type)
        manifest = artifact_manifest(artifact, subject)
        pusher.put_manifest(manifest, of_bytes(manifest))
        listed = listed and pusher.subject_seen
        entries.append(index_entry(artifact, manifest))
    if listed:
        return
    tag = fallback_tag(subject["digest"])
    merged = _existing(pusher.get_manifest(tag, MT_OCI_INDEX, MAX_INDEX))
    have = {e.get("digest") for e in merged}
    merged += [e for e in entries if e["digest"] not in have]
    pusher.put_manifest(referrers_index(merged), tag, MT_OCI_INDEX)


def _existing(body: bytes | None) -> list[dict[str, Any]]:
    """The manifests the fallback tag lists already (none if it does not exist)."""
    if body is None:
        return []
    try:
        value = json.loads(body)
    except ValueError:
        return []
    manifests = value.get("manifests") if isinstance(value, dict) else None
    return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []
