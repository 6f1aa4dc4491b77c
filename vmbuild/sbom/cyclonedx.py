"""An inventory as a CycloneDX 1.5 JSON document, made with cyclonedx-python-lib.

The image is the metadata's component (type container); each component of the
inventory is a top-level component (a Debian package with its purl, a host file, a
helper, a base image) whose files are nested components of type file with their
hashes; the unit graph's edges are the BOM's dependencies. The serial number is a UUID
derived from the image's digests and the timestamp is the image's ``created``, so the
same image gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot5
from packageurl import PackageURL

from vmbuild.sbom import inventory
from vmbuild.sbom.spdx import parse_created

MEDIA_TYPE = "application/vnd.cyclonedx+json"

_TYPES = {
    "host-file": ComponentType.FILE,
    "helper": ComponentType.FILE,
    "base-image": ComponentType.CONTAINER,
    "deb": ComponentType.LIBRARY,
    "file-set": ComponentType.FILE,
    "tree": ComponentType.FILE,
}


def serial(inv: inventory.Inventory) -> uuid.UUID:
    key = f"{inv.name}\n{inv.config_digest}\n{inv.manifest_digest}"
    return uuid.uuid5(uuid.NAMESPACE_URL, "vmbuild-cyclonedx:" + key)


def _sha256(hexd: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hexd)


def _component(c: inventory.Component) -> Component:
    props = [Property(name="vmbuild:kind", value=c.kind)]
    props += [Property(name="vmbuild:layer", value=f"{d} {g}") for d, g in c.layers]
    files = [
        Component(
            name=f.path,
            type=ComponentType.FILE,
            bom_ref=f"{c.ref}#{f.path}",
            hashes=[HashType(alg=HashAlgorithm.SHA_1, content=f.sha1), _sha256(f.sha256)],
        )
        for f in c.files
    ]
    return Component(
        name=c.name,
        type=_TYPES[c.kind],
        bom_ref=c.ref,
        version=c.version,
        description=c.description,
        purl=PackageURL.from_string(c.purl) if c.purl else None,
        hashes=[_sha256(c.sha256)] if c.sha256 else None,
        licenses=[LicenseExpression(c.license)] if c.license else None,
        properties=props,
        components=files,
    )


def render(inv: inventory.Inventory) -> bytes:
    """The CycloneDX 1.5 JSON bytes of ``inv``."""
    image = Component(
        name=inv.name,
        type=ComponentType.CONTAINER,
        bom_ref="image",
        version=inv.version,
        hashes=[_sha256(inv.config_digest.split(":", 1)[1])],
        properties=[
            Property(name="vmbuild:config-digest", value=inv.config_digest),
            Property(name="vmbuild:manifest-digest", value=inv.manifest_digest),
        ],
    )
    tools = ToolRepository(components=[Component(name="vmbuild", version=inv.tool[8:])])
    created = parse_created(inv.created).replace(tzinfo=dt.UTC)
    bom = Bom(
        serial_number=serial(inv),
        metadata=BomMetaData(component=image, timestamp=created, tools=tools),
    )
    by_ref: dict[str, Component] = {}
    for c in inv.sorted():
        comp = _component(c)
        by_ref[c.ref] = comp
        bom.components.add(comp)
    bom.register_dependency(image, list(by_ref.values()))
    for c in inv.sorted():
        deps = [by_ref[d] for d in sorted(c.depends_on) if d in by_ref and d != c.ref]
        bom.register_dependency(by_ref[c.ref], deps)
    text = JsonV1Dot5(bom).output_as_string()
    return (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()
