"""exportImage: the merged filesystem of an image as one tar (uncompressed unless
--compress says gzip or zstd).

Like ``docker export`` of a container made from the image: no whiteouts, no metadata.
Every member's mtime is the image's ``created`` time (so the host and VM paths agree and
the output is reproducible). It is not an image: ``--format oci`` and ``oci-archive``
are refused before any work.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import BinaryIO

from vmbuild import progress, tempdirs
from vmbuild.builders.basepull import base_path
from vmbuild.builders.build_image import VM_STAGES
from vmbuild.builders.result import BuildResult
from vmbuild.config.common import created_epoch, parse_created
from vmbuild.config.export import ExportImageSpec
from vmbuild.errors import SpecError
from vmbuild.oci.compress import compressor
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import canonical_json
from vmbuild.oci.merge import flatten
from vmbuild.oci.output import OutputOptions, atomic_file
from vmbuild.oci.reader import BaseImage, read_image

log = logging.getLogger("vmbuild")


def export_mtime(base: BaseImage) -> int:
    created = base.config.get("created")
    try:
        return max(0, created_epoch(parse_created(str(created), "fromImage"))) if created else 1
    except Exception:  # an odd date in a base image must not stop an export
        return 1


def image_name(spec: ExportImageSpec, base: BaseImage) -> str:
    if spec.name:
        return spec.name
    if base.repo_tags:
        return base.repo_tags[0].rsplit(":", 1)[0]
    if not isinstance(spec.from_image, Path):  # a pullImage
        return spec.from_image.final_image_name
    return spec.from_image.name.split(".")[0]


def _compressed(f: BinaryIO, opts: OutputOptions) -> contextlib.AbstractContextManager[BinaryIO]:
    """``f``, or a stream compressing into it as ``opts`` say (the plain tar goes
    straight into the file, its copies done by the kernel where they can be)."""
    if opts.compression == "none":
        return contextlib.nullcontext(f)
    return compressor(f, opts.compression, opts.level)


def build(spec: ExportImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    if opts.format != "docker-archive":
        raise SpecError(
            f"exportImage writes a root filesystem tar, not an image: --format {opts.format} "
            "does not apply to it",
            "drop --format (docker import or podman import make an image of the tar; "
            "--compress gzip or zstd compresses it)",
        )
    with tempdirs.workdir("vmbuild-") as wd:
        workdir = Path(wd)
        source = base_path(spec.from_image)
        base = read_image(source, workdir, spec.from_image_name, spec.from_image_tag)
        mtime = export_mtime(base)
        with atomic_file(out) as f, _compressed(f, opts) as sink:
            if spec.merge_in_vm:
                from vmbuild.vm.steps import RootStep, export_in_vm

                step = RootStep(
                    name="exportImage's merge in the VM (mergeInVM)",
                    disk_size=spec.disk_size,
                    memory=spec.build_vm_memory_size,
                )
                packed = export_in_vm(step, base, workdir, sink, mtime)
            else:
                packed = flatten(base.layers, sink, workdir, mtime)
        progress.current().summary(f"exported {len(base.layers)} layers", VM_STAGES)
        log.info("exported %d layers to %s", len(base.layers), out)
        return BuildResult(
            out=out,
            image_name=image_name(spec, base),
            image_tag="",
            build_args=spec.build_args or {},
            config_digest=of_bytes(canonical_json(base.config)),
            layers=[
                {
                    "diffId": packed.diff_id,
                    "digest": packed.digest,
                    "mediaType": "application/x-tar",
                }
            ],
            format="tar",
        )
