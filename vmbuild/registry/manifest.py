"""Manifests, indexes and platforms: fetch, verify against the digest asked, select.

Accepted: OCI image manifests and indexes, Docker schema 2 manifests and manifest lists.
A manifest fetched by digest must hash to that digest; a manifest list or index is
resolved to the entry for the wanted os/architecture/variant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vmbuild.errors import RegistryError, SpecError
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import GOARCH, host_goarch
from vmbuild.oci.layout import MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST
from vmbuild.oci.names import DIGEST_RE
from vmbuild.registry.client import Client
from vmbuild.registry.reference import Repository

INDEX_TYPES = frozenset({MT_OCI_INDEX, MT_DOCKER_LIST})
IMAGE_TYPES = frozenset({MT_OCI_MANIFEST, MT_DOCKER_MANIFEST})
ACCEPT = ", ".join([MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_DOCKER_LIST])
MAX_MANIFEST = 4 << 20
# The variant an entry without one stands for, and the one picked when none is asked.
DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
_ARCH_VARIANT = {"armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "aarch64": ("arm64", "v8")}


@dataclass(frozen=True)
class Platform:
    os: str
    arch: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.arch, self.variant) if p)


def parse_platform(os_name: str | None, arch: str | None, where: str = "arch") -> Platform:
    """os (default linux) and arch (default the host's; ``x86_64``, ``arm/v7`` accepted)."""
    os_name = os_name or "linux"
    text = arch or host_goarch()
    name, _, variant = text.partition("/")
    if name in _ARCH_VARIANT and not variant:
        name, variant = _ARCH_VARIANT[name]
    name = GOARCH.get(name, name)
    if not name or not name.replace("_", "").isalnum() or (variant and not variant.isalnum()):
        raise SpecError(f"{where} {text!r} is not an architecture", "use e.g. amd64, arm64, arm/v7")
    return Platform(os_name, name, variant or None)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    @classmethod
    def parse(cls, obj: Any, where: str) -> Descriptor:
        try:
            digest, size = obj["digest"], obj["size"]
            media_type = obj.get("mediaType", "")
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"{where}: malformed descriptor ({exc})", _BAD) from exc
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise RegistryError(f"{where}: unsupported or malformed digest {digest!r}", _BAD)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"{where}: bad size {size!r} for {digest}", _BAD)
        platform = obj.get("platform")
        return cls(str(media_type), digest, size, platform if isinstance(platform, dict) else None)

    def platform_of(self) -> Platform:
        p = self.platform or {}
        variant = p.get("variant")
        return Platform(
            str(p.get("os", "")),
            str(p.get("architecture", "")),
            variant if isinstance(variant, str) and variant else None,
        )


@dataclass(frozen=True)
class Manifest:
    """An image manifest as the registry sent it (``raw``, hashing to ``digest``)."""

    raw: bytes
    media_type: str
    digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    raw: bytes
    media_type: str
    digest: str
    manifests: tuple[Descriptor, ...]


def parse(raw: bytes, content_type: str, digest: str, where: str) -> Manifest | Index:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise RegistryError(f"{where}: the manifest is not JSON", _BAD) from exc
    if not isinstance(obj, dict):
        raise RegistryError(f"{where}: the manifest is not a JSON object", _BAD)
    media_type = obj.get("mediaType") or content_type.split(";")[0].strip()
    if not isinstance(media_type, str):
        raise RegistryError(f"{where}: the manifest's mediaType is not a string", _BAD)
    if obj.get("schemaVersion") == 1:
        raise RegistryError(f"{where}: schema 1 manifests are not supported", "push it anew")
    if media_type in INDEX_TYPES or (not media_type and "manifests" in obj):
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise RegistryError(f"{where}: the index lists no manifests", _BAD)
        descs = tuple(Descriptor.parse(e, where) for e in entries)
        return Index(raw, media_type or MT_OCI_INDEX, digest, descs)
    if media_type in IMAGE_TYPES or (not media_type and "layers" in obj):
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise RegistryError(f"{where}: the manifest lists no layers", _BAD)
        config = Descriptor.parse(obj.get("config"), where)
        descs = tuple(Descriptor.parse(entry, where) for entry in layers)
        return Manifest(raw, media_type or MT_OCI_MANIFEST, digest, config, descs)
    raise RegistryError(f"{where}: unsupported manifest type {media_type!r}", "not an image")


def fetch(client: Client, repo: Repository, reference: str, what: str) -> Manifest | Index:
    """GET a manifest by tag or digest; by digest, check the bytes hash to it."""
    resp = client.request(
        "GET",
        f"/v2/{repo.path}/manifests/{reference}",
        scope=f"repository:{repo.path}:pull",
        what=what,
        headers={"Accept": ACCEPT},
    )
    raw = resp.read(MAX_MANIFEST + 1)
    if len(raw) > MAX_MANIFEST:
        client.reset()
        raise RegistryError(f"{what}: the manifest is larger than 4 MiB", _BAD)
    got = of_bytes(raw)
    if reference.startswith("sha256:") and got != reference:
        raise RegistryError(
            f"{what}: the registry sent a manifest with digest {got}", "it does not match"
        )
    return parse(raw, resp.getheader("Content-Type") or "", got, what)


def select(index: Index, want: Platform, what: str) -> Descriptor:
    """The index entry for ``want``; without a variant asked, the usual one is preferred."""
    matches = []
    for desc in index.manifests:
        have = desc.platform_of()
        variant = have.variant or DEFAULT_VARIANT.get(have.arch)
        if have.os != want.os or have.arch != want.arch:
            continue
        if want.variant and variant != want.variant:
            continue
        matches.append((variant != DEFAULT_VARIANT.get(want.arch), desc))
    if not matches:
        listed = sorted({str(d.platform_of()) for d in index.manifests if d.platform})
        raise RegistryError(
            f"{what}: no image for {want} in the index",
            f"it has: {', '.join(listed) or 'no platforms'}; set os and arch",
        )
    matches.sort(key=lambda m: m[0])
    return matches[0][1]


def resolve(
    client: Client, repo: Repository, reference: str, want: Platform, what: str
) -> tuple[Manifest, Index | None]:
    """The image manifest for ``reference``, going through an index (returned too)."""
    top = fetch(client, repo, reference, what)
    if isinstance(top, Manifest):
        return top, None
    desc = select(top, want, what)
    inner = fetch(client, repo, desc.digest, what)
    if not isinstance(inner, Manifest):
        raise RegistryError(f"{what}: nested indexes are not supported", _BAD)
    return inner, top


_BAD = "the registry sent something malformed"
