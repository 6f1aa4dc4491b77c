"""Pushing referrers: by digest with the image as subject; the fallback tag only where
the registry has no referrers API, merged with what the tag listed before."""

from __future__ import annotations

import json

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.layout import MT_OCI_INDEX, MT_OCI_MANIFEST
from vmbuild.oci.referrers import Found
from vmbuild.registry.referrers import push_referrers

DIGEST = "sha256:" + "ab" * 32
SUBJECT: dict[str, object] = {"mediaType": MT_OCI_MANIFEST, "digest": DIGEST, "size": 10}
SBOM = Found("application/spdx+json", b'{"spdxVersion":"SPDX-2.3"}', {}, DIGEST)


class FakeSender:
    def __init__(self, api: bool, existing: bytes | None = None):
        self.subject_seen = False
        self.api = api
        self.existing = existing
        self.blobs: list[bytes] = []
        self.manifests: dict[str, tuple[bytes, str]] = {}

    def send_bytes(self, data: bytes, media_type: str) -> None:
        self.blobs.append(data)

    def put_manifest(
        self, manifest: bytes, reference: str | None = None, media_type: str = MT_OCI_MANIFEST
    ) -> str:
        self.manifests[reference or "?"] = (manifest, media_type)
        self.subject_seen = self.api
        return of_bytes(manifest)

    def get_manifest(self, reference: str, accept: str, limit: int) -> bytes | None:
        return self.existing


def test_a_registry_with_the_referrers_api_gets_no_fallback_tag() -> None:
    sender = FakeSender(api=True)
    push_referrers(sender, [SBOM], SUBJECT)
    assert sender.blobs == [b"{}", SBOM.data]
    [(ref, (raw, _))] = sender.manifests.items()
    manifest = json.loads(raw)
    assert ref == of_bytes(raw)
    assert manifest["subject"] == SUBJECT
    assert manifest["artifactType"] == "application/spdx+json"


def test_fallback_tag_merges_what_it_listed() -> None:
    older = {"mediaType": MT_OCI_MANIFEST, "digest": "sha256:" + "cd" * 32, "size": 5}
    existing = json.dumps({"schemaVersion": 2, "manifests": [older]}).encode()
    sender = FakeSender(api=False, existing=existing)
    push_referrers(sender, [SBOM], SUBJECT)
    raw, media_type = sender.manifests["sha256-" + "ab" * 32]
    assert media_type == MT_OCI_INDEX
    listed = json.loads(raw)["manifests"]
    assert listed[0] == older
    assert listed[1]["artifactType"] == "application/spdx+json"
