"""An inventory as an SPDX 2.3 JSON document, made and checked with spdx-tools.

The image is the document's described package (purpose CONTAINER); each component is a
package the image CONTAINS, with its files (SHA1 and SHA256, as SPDX asks) and a
verification code, its purl as an external reference, and DEPENDS_ON relationships from
the unit graph. The namespace is a UUID derived from the image's digests, and the
creation time is the image's ``created``: the same image gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from typing import Any

from spdx_tools.spdx.model import (
    Actor,
    ActorType,
    Checksum,
    ChecksumAlgorithm,
    CreationInfo,
    Document,
    ExternalPackageRef,
    ExternalPackageRefCategory,
    File,
    Package,
    PackagePurpose,
    PackageVerificationCode,
    Relationship,
    RelationshipType,
    SpdxNoAssertion,
)
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from vmbuild.sbom.inventory import Component, FileEntry, Inventory
from vmbuild.sbom.licenses import licensing

MEDIA_TYPE = "application/spdx+json"
IMAGE_ID = "SPDXRef-Image"

_PURPOSE = {
    "host-file": PackagePurpose.FILE,
    "helper": PackagePurpose.OTHER,
    "base-image": PackagePurpose.CONTAINER,
    "deb": PackagePurpose.LIBRARY,
    "file-set": PackagePurpose.OTHER,
    "tree": PackagePurpose.OTHER,
}


def spdx_id(kind: str, key: str) -> str:
    return f"SPDXRef-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def parse_created(created: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)


def namespace(inv: Inventory) -> str:
    key = f"{inv.name}\n{inv.config_digest}\n{inv.manifest_digest}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'vmbuild-sbom:' + key)}"


def _checksums(entry: FileEntry) -> list[Any]:
    return [
        Checksum(ChecksumAlgorithm.SHA1, entry.sha1),
        Checksum(ChecksumAlgorithm.SHA256, entry.sha256),
    ]


def _verification(files: list[FileEntry]) -> Any:
    joined = "".join(sorted(f.sha1 for f in files)).encode()
    return PackageVerificationCode(hashlib.sha1(joined, usedforsecurity=False).hexdigest())


def _license(expression: str | None) -> Any:
    if not expression:
        return SpdxNoAssertion()

    try:
        return licensing().parse(expression, validate=True)
    except Exception:
        return SpdxNoAssertion()


def _package(c: Component) -> Any:
    refs = []
    if c.purl:
        refs.append(ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", c.purl))
    checksums = [Checksum(ChecksumAlgorithm.SHA256, c.sha256)] if c.sha256 else []
    comment = None
    if c.layers:
        comment = "layers (diff_id digest): " + ", ".join(f"{d} {g}" for d, g in c.layers)
    return Package(
        spdx_id=spdx_id("Package", c.ref),
        name=c.name,
        download_location=SpdxNoAssertion(),
        version=c.version,
        files_analyzed=bool(c.files),
        verification_code=_verification(c.files) if c.files else None,
        checksums=checksums,
        license_declared=_license(c.license),
        license_concluded=SpdxNoAssertion(),
        copyright_text=SpdxNoAssertion(),
        description=c.description,
        comment=comment,
        external_references=refs,
        primary_package_purpose=_PURPOSE[c.kind],
    )


def document(inv: Inventory) -> Any:
    """The SPDX document (spdx-tools' model) of ``inv``."""
    info = CreationInfo(
        spdx_version="SPDX-2.3",
        spdx_id="SPDXRef-DOCUMENT",
        name=inv.name,
        document_namespace=namespace(inv),
        creators=[Actor(ActorType.TOOL, inv.tool)],
        created=parse_created(inv.created),
    )
    image = Package(
        spdx_id=IMAGE_ID,
        name=inv.name,
        download_location=SpdxNoAssertion(),
        version=inv.version,
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, inv.config_digest.split(":", 1)[1])],
        description=f"image config {inv.config_digest}, manifest {inv.manifest_digest}",
        primary_package_purpose=PackagePurpose.CONTAINER,
    )
    packages = [image]
    files = []
    rels = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, IMAGE_ID)]
    components = inv.sorted()
    known = {c.ref for c in components}
    for c in components:
        pid = spdx_id("Package", c.ref)
        packages.append(_package(c))
        rels.append(Relationship(IMAGE_ID, RelationshipType.CONTAINS, pid))
        for entry in c.files:
            fid = spdx_id("File", f"{c.ref}\n{entry.path}")
            files.append(File(f"./{entry.path}", fid, _checksums(entry)))
            rels.append(Relationship(pid, RelationshipType.CONTAINS, fid))
        for dep in sorted(c.depends_on & known):
            if dep != c.ref:
                rels.append(Relationship(pid, RelationshipType.DEPENDS_ON, spdx_id("Package", dep)))
    return Document(info, packages=packages, files=files, relationships=rels)


def render(inv: Inventory) -> bytes:
    """The SPDX 2.3 JSON bytes of ``inv``. spdx-tools' validator is the tests' job: it
    is quadratic in the relationships (far too slow for a build of hundreds of packages)."""
    doc = document(inv)
    out = io.StringIO()
    write_document_to_stream(doc, out, validate=False)
    # spdx-tools writes indent=4 and the model's order; keys sorted for stable bytes
    return (json.dumps(json.loads(out.getvalue()), indent=2, sort_keys=True) + "\n").encode()
