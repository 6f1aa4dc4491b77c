"""Writing a finished image to --out atomically, and what a build reports.

The image is written under a temporary name in the destination's directory and renamed
into place only when complete, so --out never holds half an image. A docker-archive is
compressed as a whole (like dockerTools' ``.tar.gz``; its layers stay plain tars
inside); OCI formats compress each new layer instead, so their outer tar (or directory)
is plain.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from vmbuild.config.common import OutputOptions
from vmbuild.errors import VmbuildError
from vmbuild.oci import archive
from vmbuild.oci.compress import compressor
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import Image


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


@contextlib.contextmanager
def atomic_file(out: Path) -> Iterator[BinaryIO]:
    """A file under a temporary name beside ``out``, renamed to ``out`` on success."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise VmbuildError(f"output directory {directory} does not exist", "create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_image(image: Image, out: Path, opts: OutputOptions, mtime: int) -> None:
    """Write ``image`` to ``out`` in ``opts.format``."""
    if opts.format == "oci":
        directory = out.parent if str(out.parent) else Path(".")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=directory))
        try:
            tmp.rmdir()
            archive.write_oci_layout(image, tmp)
            archive.replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    with atomic_file(out) as f:
        if opts.format == "oci-archive":
            archive.write_oci_archive(image, f, mtime)
        else:
            with compressor(f, opts.compression, opts.level) as z:
                archive.write_docker_archive(image, z, mtime)


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
