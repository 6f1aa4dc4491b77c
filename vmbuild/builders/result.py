"""What a build reports: the manual's passthru (``imageName``, ``imageTag``, build
arguments), the config digest and the layers, as `vmbuild build --json` prints it."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import Image
from vmbuild.oci.output import OutputOptions

if TYPE_CHECKING:
    from vmbuild.sbom.attest import Record


@dataclass(frozen=True)
class BuildResult:
    """What `vmbuild build --json` prints (the manual's passthru, and more)."""

    out: Path
    image_name: str
    image_tag: str
    build_args: dict[str, Any]
    config_digest: str
    layers: list[dict[str, str]] = field(default_factory=list)
    format: str = "docker-archive"

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "imageName": self.image_name,
            "imageTag": self.image_tag,
            "format": self.format,
            "configDigest": self.config_digest,
            "layers": self.layers,
            "buildArgs": self.build_args,
        }


def result_for(
    image: Image, out: Path, opts: OutputOptions, build_args: dict[str, Any]
) -> BuildResult:
    layers = [
        {"diffId": layer.diff_id, "digest": layer.digest, "mediaType": layer.media_type}
        for layer in image.layers
    ]
    return BuildResult(
        out=out,
        image_name=image.name,
        image_tag=image.tag,
        build_args=build_args,
        config_digest=of_bytes(image.config_bytes()),
        layers=layers,
        format=opts.format,
    )


def recording(
    opts: OutputOptions, function: str, build_args: dict[str, Any] | None
) -> AbstractContextManager[Record | None]:
    """The SBOM/provenance record of a build (None inside when neither is asked for: a
    build without --sbom/--provenance loads nothing of ``vmbuild.sbom``)."""
    if not opts.attest.wanted:
        return contextlib.nullcontext()
    from vmbuild.sbom.attest import recording as attest_recording

    return attest_recording(opts, function, build_args)
