"""The one writer of image metadata: OCI manifests and indexes, docker-archive's
``manifest.json`` and ``repositories``, the ``oci-layout`` file.

Every archive writer (:mod:`vmbuild.oci.archive`, the streaming writer), pullImage's
OCI archive and push build these bytes here, so an image's metadata has one shape
whichever way it is written. OCI JSON is canonical (:func:`canonical_json`: sorted keys,
no spaces); docker-archive's files keep their keys in docker's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import Image, canonical_json
from vmbuild.oci.layout import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
)

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


# --- OCI -----------------------------------------------------------------------------


def descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    """An OCI content descriptor."""
    return {"mediaType": media_type, "digest": digest, "size": size}


def descriptor_of(media_type: str, data: bytes) -> dict[str, Any]:
    """The OCI content descriptor of the blob ``data``."""
    return descriptor(media_type, of_bytes(data), len(data))


def oci_manifest_json(config: Mapping[str, Any], layers: Sequence[Mapping[str, Any]]) -> bytes:
    """An OCI image manifest of the ``config`` and ``layers`` descriptors."""
    return canonical_json(
        {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": config, "layers": layers}
    )


def image_manifest(image: Image) -> tuple[bytes, bytes]:
    """(config bytes, OCI manifest bytes) of ``image``."""
    config = image.config_bytes()
    layers = [descriptor(la.media_type, la.digest, la.blob.size) for la in image.layers]
    config_desc = descriptor(MT_OCI_CONFIG, of_bytes(config), len(config))
    return config, oci_manifest_json(config_desc, layers)


def oci_index_json(
    manifest: Mapping[str, Any],
    ref: str,
    tag: str,
    media_type: str | None = MT_OCI_INDEX,
    more: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """An OCI index of one manifest (its descriptor), named ``ref`` (name:tag) for
    containerd and ``tag`` for ``skopeo copy oci:DIR:TAG``, then the ``more`` descriptors
    (referrer artifacts, unnamed). ``media_type`` None leaves the index's own
    ``mediaType`` out (pullImage's archives, as they always were)."""
    annotations = {ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: tag}
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "manifests": [{**manifest, "annotations": annotations}, *more],
    }
    if media_type is not None:
        index["mediaType"] = media_type
    return canonical_json(index)


def image_index(image: Image, manifest: bytes, more: Sequence[Mapping[str, Any]] = ()) -> bytes:
    """The OCI index naming ``image``'s ``manifest``, then the ``more`` descriptors."""
    desc = descriptor(MT_OCI_MANIFEST, of_bytes(manifest), len(manifest))
    return oci_index_json(desc, image.ref, image.tag, MT_OCI_INDEX, more)


# --- docker-archive ------------------------------------------------------------------


class DockerEntry(NamedTuple):
    """One image of a docker-archive: its layers' directories and its RepoTags."""

    image: Image
    layer_ids: list[str]
    repo_tags: list[str]


def docker_entry(
    image: Image, layer_ids: Sequence[str] | None = None, repo_tags: Sequence[str] | None = None
) -> DockerEntry:
    """``image`` as an entry: layers named ``layer_ids`` (default: each diff_id's hex),
    tagged ``repo_tags`` (default: the image's name:tag)."""
    tags = [image.ref] if repo_tags is None else list(repo_tags)
    return DockerEntry(image, _layer_ids(image, layer_ids), tags)


def _layer_ids(image: Image, layer_ids: Sequence[str] | None) -> list[str]:
    """Each layer's directory in the archive: its diff_id's hex unless given."""
    if layer_ids is None:
        return [hex_of(layer.diff_id) for layer in image.layers]
    if len(layer_ids) != len(image.layers):
        raise ValueError(f"{len(layer_ids)} layer ids for {len(image.layers)} layers")
    return list(layer_ids)


def split_ref(ref: str) -> tuple[str, str]:
    """``name:tag`` -> (name, tag); a reference without a tag is ``latest``."""
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, "latest"
    return name, tag


def config_name(config: bytes) -> str:
    """The member a docker-archive stores an image config as."""
    return f"{hex_of(of_bytes(config))}.json"


def manifest_json(entries: Sequence[DockerEntry]) -> bytes:
    """docker-archive's ``manifest.json``: each entry's Config, RepoTags and Layers."""
    manifest = [
        {
            "Config": config_name(e.image.config_bytes()),
            "RepoTags": e.repo_tags,
            "Layers": [f"{layer_id}/layer.tar" for layer_id in e.layer_ids],
        }
        for e in entries
    ]
    return json.dumps(manifest, separators=(",", ":")).encode()


def repositories_json(entries: Sequence[DockerEntry]) -> bytes:
    """The legacy ``repositories`` file: name -> tag -> the image's top layer."""
    repositories: dict[str, dict[str, str]] = {}
    for e in entries:
        for ref in e.repo_tags:
            name, tag = split_ref(ref)
            repositories.setdefault(name, {})[tag] = e.layer_ids[-1] if e.layer_ids else ""
    return json.dumps(repositories, separators=(",", ":")).encode()
