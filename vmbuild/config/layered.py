"""buildLayeredImage / streamLayeredImage specs: the manual's arguments and their checks.

``contents`` items are host paths (a tree copied to ``/``, no references), environment
helpers (``"binSh"``, ``{ helper = "fakeNss", ... }``) or ``{ path = "/usr/bin/bash",
closure = true }``: the file plus the shared libraries it needs, each a content unit.

Beyond the manual, ``minLayerSize`` (bytes, default 64 KiB): a content unit smaller than
this never gets a layer of its own; it shares the layer of unpopular units instead.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.config.arch import PROGRAM_HELPERS, check_host_programs, parse_architecture
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
from vmbuild.units.graph import config_programs
from vmbuild.units.helpers import HELPERS, Helper, parse_helper

MAX_LAYERS_DEFAULT = 100
MAX_LAYERS_LIMIT = 125
MIN_LAYER_SIZE_DEFAULT = 64 * 1024
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ClosureItem:
    """A host file that brings the shared libraries it needs (each its own unit)."""

    path: Path


ContentItem = Path | Helper | ClosureItem | Item  # Item: a content source's


@dataclass(frozen=True)
class LayeredSpec:
    function: str
    name: str
    tag: str | None = None
    from_image: BaseSource | None = None
    contents: tuple[ContentItem, ...] = ()
    config: dict[str, Any] | None = None
    architecture: str = ""
    created: str = EPOCH_DEFAULT
    mtime: str = EPOCH_DEFAULT  # every file's mtime in the unit and customisation layers
    # the owner of every file in the unit layers (nixpkgs' store layers)
    uid: int = 0
    gid: int = 0
    uname: str = "root"
    gname: str = "root"
    include_store_paths: bool = True
    max_layers: int = MAX_LAYERS_DEFAULT
    min_layer_size: int = MIN_LAYER_SIZE_DEFAULT
    extra_commands: str = ""
    fake_root_commands: str = ""
    enable_fakechroot: bool = False
    compressor: Compression | None = None
    build_args: dict[str, Any] | None = None
    tables: dict[str, Any] = field(default_factory=dict)  # each content source's table

    @property
    def streaming(self) -> bool:
        return self.function == "streamLayeredImage"


def _readable(path: Path, where: str, value: str | None = None) -> None:
    """``path`` must exist and be readable; ``value`` is the contents item it came from
    (a file at an absolute path there is warned about: it lands at the root)."""
    if not path.exists():
        raise SpecError(
            f"{where}: {path} does not exist",
            missing_item_hint(value, HELPERS, closures=True)
            if value is not None
            else "fix the path (relative paths resolve against the spec file's directory)",
        )
    if not os.access(path, os.R_OK):
        raise SpecError(f"{where}: {path} is not readable", "make it readable by this user")
    if (
        value is not None
        and Path(value).is_absolute()
        and path.parent != Path("/")
        and not path.is_dir()
    ):
        warnings.warn(
            f"{where}: {value} is a file: it lands at /{path.name} (a contents path's own "
            f"files go to the image's root); for {value} at its own path with the libraries "
            f'it needs, write {{ path = "{value}", closure = true }}',
            UserWarning,
            2,
        )


def check_elf(path: Path, where: str) -> None:
    """``path`` must be a readable regular ELF file (after following symlinks)."""
    try:  # one open (non-blocking: a FIFO must not hang) instead of four checks
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        _readable(path, where)  # raises the error that fits, if one does
        raise SpecError(f"{where}: cannot read {path}: {exc.strerror}", "check the path") from exc
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        magic = os.read(fd, 4) if regular else b""
    finally:
        os.close(fd)
    if not regular:
        raise SpecError(f"{where}: {path} is not a file", "closure = true takes an ELF file")
    if magic != ELF_MAGIC:
        raise SpecError(
            f"{where}: {path} is not an ELF file",
            "closure = true takes a program or library; give other files as a plain path",
        )


def content_item(fields: Fields) -> Any:
    def item(value: Any, where: str) -> ContentItem:
        place = f"{fields.where}: {where}"
        found = parse_item(value, place)
        if found is not None:
            return found
        helper = parse_helper(value, place)
        if helper is not None:
            return helper
        if isinstance(value, dict):
            extra = set(value) - {"path", "closure"}
            if extra:
                raise SpecError(
                    f"{place}: unknown key {sorted(extra)[0]!r}",
                    'write { path = "/usr/bin/bash", closure = true }',
                )
            raw, closure = value.get("path"), value.get("closure", False)
            if not isinstance(raw, str) or not raw or not isinstance(closure, bool):
                raise SpecError(
                    f"{place}: path must be a string and closure true or false",
                    'write { path = "/usr/bin/bash", closure = true }',
                )
            path = fields.resolve(raw)
            if closure:
                check_elf(path, place)
                return ClosureItem(path)
            value = raw
        if not isinstance(value, str) or not value:
            raise SpecError(
                f"{place} must be a path, a helper name or a table, got {describe_toml(value)}",
                'write a path string, "binSh", or { path = "/usr/bin/bash", closure = true }',
            )
        path = fields.resolve(value)
        _readable(path, place, value)
        return path

    return item


def _owner_name(fields: Fields, key: str) -> str:
    value = fields.get_str(key, "root") or ""
    if "\0" in value or "\n" in value:
        raise SpecError(f"{fields.where}: {key} = {value!r} is not a user name", "fix the name")
    return value


def parse(fields: Fields, function: str = "buildLayeredImage") -> LayeredSpec:
    where = fields.where
    name, tag = name_and_tag(fields)
    from_image = get_base_image(fields)
    if isinstance(from_image, Path):
        _readable(from_image, f"{where}: fromImage")
    if fields.has("runAsRoot"):
        raise SpecError(
            f"{where}: runAsRoot is buildImage's argument, not {function}'s",
            "use fakeRootCommands (runs under fakeroot) here, or build with buildImage",
        )
    max_layers = fields.get_int(
        "maxLayers", MAX_LAYERS_DEFAULT, minimum=2, maximum=MAX_LAYERS_LIMIT
    )
    min_size = fields.get_int("minLayerSize", MIN_LAYER_SIZE_DEFAULT, minimum=0)
    contents = tuple(fields.get_list("contents", content_item(fields)))
    spec = LayeredSpec(
        function=function,
        name=name,
        tag=tag,
        from_image=from_image,
        contents=contents,
        config=check_image_config(fields.get_table("config"), where),
        architecture=parse_architecture(fields.get_str("architecture"), where),
        created=fields.get_date("created"),
        mtime=fields.get_date("mtime"),
        uid=fields.get_int("uid", 0, minimum=0, maximum=2**32 - 2) or 0,
        gid=fields.get_int("gid", 0, minimum=0, maximum=2**32 - 2) or 0,
        uname=_owner_name(fields, "uname"),
        gname=_owner_name(fields, "gname"),
        include_store_paths=fields.get_bool("includeStorePaths", True),
        max_layers=MAX_LAYERS_DEFAULT if max_layers is None else max_layers,
        min_layer_size=MIN_LAYER_SIZE_DEFAULT if min_size is None else min_size,
        extra_commands=fields.get_script("extraCommands"),
        fake_root_commands=fields.get_script("fakeRootCommands"),
        enable_fakechroot=fields.get_bool("enableFakechroot"),
        compressor=get_compressor(fields),
        build_args=dict(fields.given),
        tables=source_tables(fields, contents),
    )
    fields.finish()
    check_sources(spec.tables, function, spec.architecture, where)
    programs = [
        *(str(i.path) for i in spec.contents if isinstance(i, ClosureItem)),
        *(i.name for i in spec.contents if isinstance(i, Helper) and i.name in PROGRAM_HELPERS),
        *config_programs(spec.config or {}),
    ]
    check_host_programs(spec.architecture, programs, f"{where}: contents")
    return spec
