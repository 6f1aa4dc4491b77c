"""OCI 1.1 referrer artifacts: a document (an SBOM, a provenance statement) attached to
an image manifest through the artifact manifest's ``subject``.

An artifact manifest is an image manifest whose ``artifactType`` says what it holds,
whose config is the empty descriptor (``{}``) and whose one layer is the document. In
an OCI layout or archive the artifacts are listed in ``index.json`` after the image
(without a ``ref.name``, so ``oci:DIR:TAG`` still names the image); a registry lists
them through its referrers API or, where it has none, under the fallback tag
``sha256-<hex of the subject>`` (an image index of the artifact manifests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.errors import ImageError
from vmbuild.oci import imagejson
from vmbuild.oci.digest import check_digest, hex_of
from vmbuild.oci.image import canonical_json
from vmbuild.oci.layout import MT_OCI_EMPTY, MT_OCI_INDEX, MT_OCI_MANIFEST
from vmbuild.oci.metadata import descriptor_of

EMPTY = b"{}"
MAX_DOCUMENT = 32 << 20  # as the reader's MAX_JSON


@dataclass(frozen=True)
class Artifact:
    """One document to attach: its type (also the layer's media type) and bytes."""

    artifact_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)


def artifact_manifest(artifact: Artifact, subject: dict[str, Any]) -> bytes:
    """The artifact manifest of ``artifact`` whose subject is the descriptor ``subject``."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": descriptor_of(MT_OCI_EMPTY, EMPTY),
        "layers": [descriptor_of(artifact.artifact_type, artifact.data)],
        "subject": subject,
    }
    if artifact.annotations:
        manifest["annotations"] = dict(artifact.annotations)
    return canonical_json(manifest)


def index_entry(artifact: Artifact, manifest: bytes) -> dict[str, Any]:
    """How an artifact manifest is listed in ``index.json`` or a referrers index."""
    entry = descriptor_of(MT_OCI_MANIFEST, manifest)
    entry["artifactType"] = artifact.artifact_type
    if artifact.annotations:
        entry["annotations"] = dict(artifact.annotations)
    return entry


def blobs_of(artifacts: Sequence[Artifact], subject: dict[str, Any]) -> list[bytes]:
    """Every blob the artifacts need (empty config, documents, manifests), in order."""
    out: list[bytes] = [EMPTY] if artifacts else []
    for artifact in artifacts:
        out += [artifact.data, artifact_manifest(artifact, subject)]
    return out


def fallback_tag(subject_digest: str) -> str:
    """The tag a registry without the referrers API lists referrers under."""
    return "sha256-" + hex_of(subject_digest)


def referrers_index(entries: Sequence[dict[str, Any]]) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})


@dataclass(frozen=True)
class Found:
    """An artifact read back from an image: its manifest and document."""

    artifact_type: str
    data: bytes
    annotations: dict[str, str]
    subject: str


def find_referrers(members: Any, where: str) -> list[Found]:
    """The artifacts listed in an OCI layout's or archive's ``index.json`` (``members``:
    the reader's view of the archive), each checked against its digests."""
    if "index.json" not in getattr(members, "refs", {}) and not (
        members.path.is_dir() and (members.path / "index.json").exists()
    ):
        return []
    index = members.json("index.json")
    found: list[Found] = []
    raw = index.get("manifests") if isinstance(index, dict) else None
    for value in raw if isinstance(raw, list) else []:
        if not isinstance(value, dict) or "artifactType" not in value:
            continue
        desc = imagejson.read_descriptor(value, where, "index.json's artifact")
        manifest = members.blob_json(desc)
        if not isinstance(manifest, dict):
            raise ImageError(f"{where}: an artifact manifest is not an object", "corrupt image")
        kind = manifest.get("artifactType")
        layers = manifest.get("layers")
        subject = manifest.get("subject")
        if not isinstance(kind, str) or not isinstance(layers, list) or len(layers) != 1:
            raise ImageError(f"{where}: artifact {desc.digest} is malformed", "corrupt image")
        if not isinstance(subject, dict):
            raise ImageError(f"{where}: artifact {desc.digest} has no subject", "corrupt image")
        layer = imagejson.read_descriptor(layers[0], where, "the artifact's layer")
        if layer.size is None or layer.size > MAX_DOCUMENT:
            raise ImageError(f"{where}: artifact {desc.digest} is too large", "corrupt image")
        data = members.raw(f"blobs/sha256/{hex_of(layer.digest)}", layer.digest, layer.size)
        notes = manifest.get("annotations")
        found.append(
            Found(
                kind,
                data,
                {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {},
                check_digest(subject.get("digest"), f"{where}: artifact subject"),
            )
        )
    return found


def is_oci(path: Path) -> bool:
    """Whether ``path`` is an OCI layout, or an uncompressed archive with ``index.json``
    (headers only are read: an uncompressed tar is seeked through). A compressed archive
    is taken for a docker-archive (it holds no referrers)."""
    if path.is_dir():
        return (path / "index.json").is_file()
    import tarfile

    from vmbuild.oci.compress import sniff

    try:
        with open(path, "rb") as f:
            if sniff(f.read(4)) != "none":
                return False
        with tarfile.open(path, mode="r:") as tar:
            return any(m.name.lstrip("./") == "index.json" for m in tar)
    except (tarfile.TarError, OSError):
        return False


def read_referrers(path: Path, workdir: Path) -> list[Found]:
    """The referrer artifacts stored in the OCI layout or archive at ``path``."""
    from vmbuild.oci import reader

    members: Any = reader._DirMembers(path) if path.is_dir() else reader._Members(path, workdir)
    return find_referrers(members, str(path))
