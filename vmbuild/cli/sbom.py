"""`vmbuild sbom ARCHIVE`: the SBOM an earlier build attached, or an inventory.

An OCI layout or archive that carries an SBOM referrer prints it as stored. For any
other image (a docker-archive, an image built elsewhere) the inventory is read from its
layers without unpacking them: the Debian packages of its dpkg database, and each
layer's files with their hashes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vmbuild import tempdirs
from vmbuild.cli.common import add_command
from vmbuild.errors import ImageError
from vmbuild.oci.archive import split_ref
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import Image, canonical_json
from vmbuild.oci.output import SBOM_FORMATS, AttestOptions
from vmbuild.oci.reader import read_image
from vmbuild.oci.referrers import is_oci, read_referrers
from vmbuild.sbom import cyclonedx, dpkg, spdx
from vmbuild.sbom.attest import version
from vmbuild.sbom.inventory import Component, Inventory

TYPES = {"spdx": spdx.MEDIA_TYPE, "cyclonedx": cyclonedx.MEDIA_TYPE}


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "sbom",
        help="print the SBOM of an image archive or layout",
        examples=[
            "vmbuild sbom ./layout                       # the SBOM the build attached",
            "vmbuild sbom image.tar.gz --sbom-format cyclonedx > image.cdx.json",
        ],
    )
    p.add_argument("archive", type=Path, help="docker-archive, OCI archive or OCI layout")
    p.add_argument("--sbom-format", help="spdx (default) or cyclonedx")
    p.set_defaults(func=cmd_sbom)


def cmd_sbom(args: argparse.Namespace) -> int:
    fmt = AttestOptions(sbom_format=args.sbom_format or "spdx").sbom_format
    sys.stdout.buffer.write(sbom_of(args.archive, fmt, explicit=args.sbom_format is not None))
    sys.stdout.buffer.flush()
    return 0


def sbom_of(path: Path, fmt: str, explicit: bool = False) -> bytes:
    """The attached SBOM (in ``fmt`` if ``explicit``), else an inventory in ``fmt``."""
    if not path.exists():
        raise ImageError(f"{path} does not exist", "give an image archive or OCI layout")
    with tempdirs.workdir("vmbuild-sbom-") as wd:
        work = Path(wd)
        base = read_image(path, work)
        if is_oci(path):
            wanted = [TYPES[fmt]] if explicit else [TYPES[f] for f in SBOM_FORMATS]
            for found in read_referrers(path, work):
                if found.artifact_type in wanted:
                    return found.data
        config = base.config_bytes or canonical_json(base.config)
        ref = base.repo_tags[0] if base.repo_tags else path.name
        name, tag = split_ref(ref)
        scans = dpkg.scan_layers(base.layers, str(path))
        components: list[Component] = dpkg.packages(scans)
        for layer, scanned in zip(base.layers, scans, strict=True):
            components.append(
                Component(
                    ref=f"layer:{layer.diff_id}",
                    kind="file-set",
                    name=f"layer {layer.diff_id}",
                    files=scanned.files,
                    layers=[(layer.diff_id, layer.digest)],
                    description=f"the files of layer {layer.diff_id}",
                )
            )
        image = Image(name, tag, base.config, base.layers, config)
        from vmbuild.oci.archive import oci_manifest

        inv = Inventory(
            name=ref,
            version=tag,
            created=str(base.config.get("created") or "1970-01-01T00:00:01Z"),
            config_digest=of_bytes(config),
            manifest_digest=of_bytes(oci_manifest(image)[1]),
            tool=f"vmbuild-{version()}",
            components=components,
        )
        return cyclonedx.render(inv) if fmt == "cyclonedx" else spdx.render(inv)
