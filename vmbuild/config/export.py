"""exportImage's spec: fromImage (required), fromImageName/Tag, name, diskSize.

The output is a root filesystem tar, uncompressed as nixpkgs' (``compressor``, not a
key of the spec: ``--compress gzip|zstd`` compresses it), and never an image, so
``--format oci``/``oci-archive`` are refused by the builder.

``mergeInVM`` (beyond the manual, default false) flattens the layers inside the build
VM, as nixpkgs does; by default they are merged as tar streams on the host, which needs
no root and no VM and gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmbuild.config.base import BaseSource, get_base_image
from vmbuild.config.build_image import DISK_SIZE_DEFAULT, MEMORY_DEFAULT
from vmbuild.config.common import Fields
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression


@dataclass(frozen=True)
class ExportImageSpec:
    from_image: BaseSource
    from_image_name: str | None = None
    from_image_tag: str | None = None
    name: str | None = None
    disk_size: int = DISK_SIZE_DEFAULT
    build_vm_memory_size: int = MEMORY_DEFAULT
    merge_in_vm: bool = False
    build_args: dict[str, Any] | None = None
    compressor: Compression = "none"  # the default of --compress (config.output_options)


def parse(fields: Fields, function: str = "exportImage") -> ExportImageSpec:
    from_image = get_base_image(fields)
    if from_image is None:
        raise SpecError(f"{fields.where}: fromImage is required", 'add fromImage = "base.tar"')
    spec = ExportImageSpec(
        from_image=from_image,
        from_image_name=fields.get_str("fromImageName"),
        from_image_tag=fields.get_str("fromImageTag"),
        name=fields.get_str("name"),
        disk_size=fields.get_int("diskSize", DISK_SIZE_DEFAULT, minimum=64, maximum=2**22)
        or DISK_SIZE_DEFAULT,
        build_vm_memory_size=fields.get_int(
            "buildVMMemorySize", MEMORY_DEFAULT, minimum=128, maximum=2**20
        )
        or MEMORY_DEFAULT,
        merge_in_vm=fields.get_bool("mergeInVM"),
        build_args=dict(fields.given),
    )
    fields.finish()
    return spec
