"""The shapes of an input image's JSON, checked where it is read.

A docker-archive's ``manifest.json``, an OCI ``index.json``, an image index or manifest
and an image config come from the image, so any of them may be of the wrong type: each
function here returns the part vmbuild uses or raises one :class:`ImageError` saying
which field is wrong. Every digest goes through :func:`check_digest`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from vmbuild.errors import ImageError
from vmbuild.oci.digest import check_digest
from vmbuild.oci.layout import MT_DOCKER_LIST, MT_OCI_INDEX

HINT = "the image is corrupt or was not written by an image tool"


def _fail(where: str, what: str) -> ImageError:
    return ImageError(f"{where}: {what}", HINT)


def _object(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"{what} is not a JSON object")
    return value


def _list(value: Any, where: str, what: str, *, optional: bool = False) -> list[Any]:
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise _fail(where, f"{what} is not a list")
    return value


def _strings(value: Any, where: str, what: str, *, optional: bool = False) -> list[str]:
    items = _list(value, where, what, optional=optional)
    if not all(isinstance(v, str) for v in items):
        raise _fail(where, f"{what} holds something other than strings")
    return items


class DockerEntry(NamedTuple):
    """One image of a docker-archive's manifest.json."""

    config: str  # member name of the config
    layers: list[str]  # member names of the layers, bottom first
    repo_tags: list[str]


def docker_manifest(value: Any, where: str) -> list[DockerEntry]:
    entries = _list(value, where, "manifest.json")
    if not entries:
        raise _fail(where, "manifest.json lists no image")
    out = []
    for i, raw in enumerate(entries):
        entry = _object(raw, where, f"manifest.json entry {i + 1}")
        config = entry.get("Config")
        if not isinstance(config, str) or not config:
            raise _fail(where, f"manifest.json entry {i + 1} has no Config member name")
        layers = _strings(entry.get("Layers"), where, f"manifest.json entry {i + 1}'s Layers")
        tags = _strings(
            entry.get("RepoTags"), where, f"manifest.json entry {i + 1}'s RepoTags", optional=True
        )
        out.append(DockerEntry(config, layers, tags))
    return out


class Descriptor(NamedTuple):
    """A content descriptor: what vmbuild uses of it."""

    digest: str
    size: int | None
    annotations: dict[str, str]
    architecture: str | None
    media_type: str | None


def read_descriptor(value: Any, where: str, what: str) -> Descriptor:
    d = _object(value, where, what)
    digest = check_digest(d.get("digest"), f"{where}: {what}")
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _fail(where, f"{what} has a size that is not a count of bytes")
    annotations = d.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise _fail(where, f"{what} has annotations that are not an object")
    platform = d.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _fail(where, f"{what} has a platform that is not an object")
    arch = (platform or {}).get("architecture")
    media_type = d.get("mediaType")
    return Descriptor(
        digest,
        size,
        {k: v for k, v in (annotations or {}).items() if isinstance(v, str)},
        arch if isinstance(arch, str) else None,
        media_type if isinstance(media_type, str) else None,
    )


def index_manifests(value: Any, where: str, what: str) -> list[Descriptor]:
    """The ``manifests`` of ``index.json`` or of an image index."""
    index = _object(value, where, what)
    items = _list(index.get("manifests"), where, f"{what}'s manifests", optional=True)
    if not items:
        raise _fail(where, f"{what} lists no image")
    return [read_descriptor(m, where, f"{what}'s manifest {i + 1}") for i, m in enumerate(items)]


def is_index(value: Any) -> bool:
    """Whether a manifest blob is an image index (or a Docker manifest list)."""
    return isinstance(value, dict) and (
        "manifests" in value or value.get("mediaType") in (MT_OCI_INDEX, MT_DOCKER_LIST)
    )


class Manifest(NamedTuple):
    config: Descriptor
    layers: list[Descriptor]


def image_manifest(value: Any, where: str) -> Manifest:
    manifest = _object(value, where, "the image manifest")
    config = read_descriptor(manifest.get("config"), where, "the manifest's config")
    layers = _list(manifest.get("layers"), where, "the manifest's layers")
    return Manifest(
        config,
        [read_descriptor(d, where, f"the manifest's layer {i + 1}") for i, d in enumerate(layers)],
    )


def image_config(value: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    """The config (checked where vmbuild reads it) and its diff_ids."""
    config = _object(value, where, "the image config")
    rootfs = _object(config.get("rootfs"), where, "the config's rootfs")
    diff_ids = _list(rootfs.get("diff_ids"), where, "the config's rootfs.diff_ids")
    checked = [check_digest(d, f"{where}: diff_id {i + 1}") for i, d in enumerate(diff_ids)]
    inner = config.get("config")
    if inner is not None:
        inner = _object(inner, where, "the config's config")
        _strings(inner.get("Env"), where, "the config's Env", optional=True)
    history = _list(config.get("history"), where, "the config's history", optional=True)
    for i, h in enumerate(history):
        _object(h, where, f"the config's history entry {i + 1}")
    return config, checked
