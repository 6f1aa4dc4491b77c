"""buildImage's spec: the manual's arguments, their defaults, and their validation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.config.arch import (
    PROGRAM_HELPERS,
    check_host_programs,
    check_run_as_root,
    parse_architecture,
)
from vmbuild.config.base import BaseSource, get_base_image
from vmbuild.config.common import (
    EPOCH_DEFAULT,
    Fields,
    check_sources,
    describe_toml,
    get_compressor,
    missing_item_hint,
    name_and_tag,
    source_tables,
)
from vmbuild.config.image_config import check_image_config
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression
from vmbuild.sources import Item, parse_item
from vmbuild.units.helpers import HELPERS, Helper, parse_helper

DISK_SIZE_DEFAULT = 1024
MEMORY_DEFAULT = 512

CopyItem = Path | Helper | Item  # Item: a content source's (vmbuild.sources)


@dataclass(frozen=True)
class BuildImageSpec:
    name: str
    tag: str | None = None
    from_image: BaseSource | None = None
    from_image_name: str | None = None
    from_image_tag: str | None = None
    copy_to_root: tuple[CopyItem, ...] = ()
    keep_contents_dirlinks: bool = False
    run_as_root: str | None = None
    extra_commands: str = ""
    config: dict[str, Any] | None = None
    architecture: str = ""
    created: str = EPOCH_DEFAULT
    uid: int = 0
    gid: int = 0
    disk_size: int = DISK_SIZE_DEFAULT
    build_vm_memory_size: int = MEMORY_DEFAULT
    compressor: Compression | None = None
    build_args: dict[str, Any] | None = None
    tables: dict[str, Any] = field(default_factory=dict)  # each content source's table


def copy_item(fields: Fields) -> Any:
    def item(value: Any, where: str) -> CopyItem:
        found = parse_item(value, f"{fields.where}: {where}")
        if found is not None:
            return found
        helper = parse_helper(value, f"{fields.where}: {where}")
        if helper is not None:
            return helper
        if not isinstance(value, str) or not value:
            raise SpecError(
                f"{fields.where}: {where} must be a path or a helper name, "
                f"got {describe_toml(value)}",
                'write a path string, or e.g. "fakeNss"',
            )
        path = fields.resolve(value)
        if not path.exists() and not path.is_symlink():
            raise SpecError(
                f"{fields.where}: {where}: {value} does not exist",
                missing_item_hint(value, HELPERS, closures=False),
            )
        return path

    return item


def parse(fields: Fields, function: str = "buildImage") -> BuildImageSpec:
    where = fields.where
    name, tag = name_and_tag(fields)
    from_image = get_base_image(fields)
    items = fields.get_list("copyToRoot", copy_item(fields))
    if fields.has("contents"):
        warnings.warn(f"{where}: 'contents' is deprecated, use 'copyToRoot'", FutureWarning, 2)
        if items:
            raise SpecError(f"{where}: give copyToRoot or contents, not both", "use copyToRoot")
        items = fields.get_list("contents", copy_item(fields))
    created = fields.get_date("created")
    spec = BuildImageSpec(
        name=name,
        tag=tag,
        from_image=from_image,
        from_image_name=fields.get_str("fromImageName"),
        from_image_tag=fields.get_str("fromImageTag"),
        copy_to_root=tuple(items),
        keep_contents_dirlinks=fields.get_bool("keepContentsDirlinks"),
        run_as_root=fields.get_script("runAsRoot") if fields.has("runAsRoot") else None,
        extra_commands=fields.get_script("extraCommands"),
        config=check_image_config(fields.get_table("config"), where),
        architecture=parse_architecture(fields.get_str("architecture"), where),
        created=created,
        uid=fields.get_int("uid", 0, minimum=0, maximum=2**32 - 2) or 0,
        gid=fields.get_int("gid", 0, minimum=0, maximum=2**32 - 2) or 0,
        disk_size=fields.get_int("diskSize", DISK_SIZE_DEFAULT, minimum=64, maximum=2**22)
        or DISK_SIZE_DEFAULT,
        build_vm_memory_size=fields.get_int(
            "buildVMMemorySize", MEMORY_DEFAULT, minimum=128, maximum=2**20
        )
        or MEMORY_DEFAULT,
        compressor=get_compressor(fields),
        build_args=dict(fields.given),
        tables=source_tables(fields, items),
    )
    fields.finish()
    check_sources(spec.tables, function, spec.architecture, where)
    programs = [i.name for i in spec.copy_to_root if isinstance(i, Helper)]
    check_host_programs(
        spec.architecture, (p for p in programs if p in PROGRAM_HELPERS), f"{where}: copyToRoot"
    )
    if spec.run_as_root is not None:
        check_run_as_root(spec.architecture, where)
    return spec
