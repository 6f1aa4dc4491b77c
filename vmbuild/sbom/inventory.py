"""What went into an image: the inventory the SBOM writers turn into documents.

A :class:`Component` is one content unit as the build knew it: a host file (with its
path and hash), a helper, a base image (its reference and layer digests), a Debian
package (name, version, architecture, the ``.deb``'s hash), or a file set that no unit
claims (the customisation layer, a root step's output). ``depends_on`` holds the units
it references (the unit graph's edges). Everything is kept in a fixed order, so the
same build gives the same documents.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vmbuild.oci.tree import BlobSource, Entry

Kind = Literal["host-file", "helper", "base-image", "deb", "file-set", "tree"]


@dataclass(frozen=True, order=True)
class FileEntry:
    """A regular file of the image: its path (no leading slash) and hashes."""

    path: str
    sha256: str  # hex
    sha1: str  # hex (SPDX 2.3 requires it)
    size: int = 0


@dataclass
class Component:
    ref: str  # unique within the inventory, stable across builds
    kind: Kind
    name: str
    version: str | None = None
    purl: str | None = None
    sha256: str | None = None  # hex: of the unit itself (a .deb, a lone file)
    files: list[FileEntry] = field(default_factory=list)
    license: str | None = None  # an SPDX license expression, when known
    description: str | None = None
    layers: list[tuple[str, str]] = field(default_factory=list)  # (diff_id, digest)
    depends_on: set[str] = field(default_factory=set)
    architecture: str | None = None


@dataclass
class Inventory:
    """An image and its components."""

    name: str  # the image reference, name:tag
    version: str  # the tag
    created: str  # ISO 8601 (the image's ``created``)
    config_digest: str
    manifest_digest: str
    tool: str  # "vmbuild-<version>"
    components: list[Component] = field(default_factory=list)

    def sorted(self) -> list[Component]:
        return sorted(self.components, key=lambda c: c.ref)


def hash_file(path: Path | str) -> tuple[str, str, int]:
    """(sha256 hex, sha1 hex, size) of a host file."""
    h256, h1 = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h256.update(chunk)
            h1.update(chunk)
            size += len(chunk)
    return h256.hexdigest(), h1.hexdigest(), size


def hash_bytes(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), hashlib.sha1(data, usedforsecurity=False).hexdigest()


def read_entry(entry: Entry) -> bytes:
    """The bytes of a regular-file layer entry (a host file, or a range of a payload)."""
    with open(entry.host, "rb") as f:
        if isinstance(entry, BlobSource):
            f.seek(entry.offset)
            return f.read(entry.size)
        return f.read()


def files_of(entries: Mapping[str, Entry]) -> list[FileEntry]:
    """The regular files among a tree's entries, hashed, in path order. Symlinks and
    directories are not files of their own here."""
    out: list[FileEntry] = []
    for rel, entry in sorted(entries.items()):
        st = entry.stat()
        if not stat.S_ISREG(st.st_mode):
            continue
        if isinstance(entry, BlobSource):
            sha256, sha1 = hash_bytes(read_entry(entry))
            size = entry.size
        else:
            sha256, sha1, size = hash_file(entry.host)
        out.append(FileEntry(rel.lstrip("/"), sha256, sha1, size))
    return out


def deb_purl(name: str, version: str, arch: str | None) -> str:
    """The package URL of a Debian package: ``pkg:deb/debian/NAME@VERSION?arch=ARCH``
    (packageurl-python's encoding: ``+`` is ``%2B``)."""
    from packageurl import PackageURL

    qualifiers = {"arch": arch} if arch else None
    return str(PackageURL("deb", "debian", name, version, qualifiers).to_string())


def deb_component(
    name: str,
    version: str,
    arch: str | None,
    sha256: str | None = None,
    license: str | None = None,
    depends: Iterable[str] = (),
    ref: str | None = None,
) -> Component:
    return Component(
        ref=ref or f"deb:{name}:{arch or ''}",
        kind="deb",
        name=name,
        version=version,
        purl=deb_purl(name, version, arch),
        sha256=sha256,
        license=license,
        architecture=arch,
        depends_on=set(depends),  # refs of other components
    )
