"""Spec loading: TOML -> one frozen dataclass per dockerTools function.

A spec file is one table of the manual's arguments; ``function`` picks the function
(default ``buildImage``). Each function's arguments are validated by its own module here,
so every check on user input lives in this package.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.config.common import Fields
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression
from vmbuild.oci.output import OutputOptions

# function -> module with parse(fields, function)
PARSERS = {
    "buildImage": "vmbuild.config.build_image",
    "buildLayeredImage": "vmbuild.config.layered",
    "streamLayeredImage": "vmbuild.config.layered",
    "pullImage": "vmbuild.config.pull",
    "exportImage": "vmbuild.config.export",
    "mergeImages": "vmbuild.config.merge",
}


@dataclass(frozen=True)
class Loaded:
    function: str
    spec: Any
    cache_from: tuple[str, ...] = ()  # the spec's cacheFrom (docker://HOST/REPO each)
    cache_to: str | None = None  # the spec's cacheTo


def parse_table(table: dict[str, Any], where: str, base_dir: Path) -> Loaded:
    table = dict(table)
    function = table.pop("function", "buildImage")
    if function not in PARSERS:
        raise SpecError(
            f"{where}: unknown function {function!r}",
            f"use one of {', '.join(PARSERS)}",
        )
    cache_from, cache_to = _cache_keys(table, where)
    module = importlib.import_module(PARSERS[function])
    fields = Fields(table, where, base_dir)
    spec = module.parse(fields) if function == "pullImage" else module.parse(fields, function)
    return Loaded(function, spec, cache_from, cache_to)


def _cache_keys(table: dict[str, Any], where: str) -> tuple[tuple[str, ...], str | None]:
    """``cacheFrom`` (a string or a list of them) and ``cacheTo`` (a string), taken out
    of ``table``: the remote caches (vmbuild.remotecache checks the references)."""
    froms = table.pop("cacheFrom", [])
    to = table.pop("cacheTo", None)
    if isinstance(froms, str):
        froms = [froms]
    if not isinstance(froms, list) or not all(isinstance(f, str) for f in froms):
        raise SpecError(f"{where}: cacheFrom must be a string or a list of strings", _CACHE)
    if to is not None and not isinstance(to, str):
        raise SpecError(f"{where}: cacheTo must be a string", _CACHE)
    return tuple(froms), to


_CACHE = 'e.g. cacheFrom = ["docker://registry.example.com/team/cache"]'


def output_options(
    loaded: Loaded, format: str, compress: Compression | None, level: int | None
) -> OutputOptions:
    """How to write ``loaded``'s image: ``compress`` (the command line's) wins over the
    spec's ``compressor``; the default is gzip (none for pullImage, as nixpkgs; for
    mergeImages, the last input's compression, as nixpkgs)."""
    default: Compression = "none" if loaded.function == "pullImage" else "gzip"
    if loaded.function == "mergeImages":
        default = loaded.spec.last_compression
    chosen = compress or getattr(loaded.spec, "compressor", None) or default
    return OutputOptions(format, chosen, level)


def load_spec(path: Path) -> Loaded:
    """Read and validate the spec file at ``path``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}", "check the path") from exc
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: TOML syntax error: {exc}", "fix the spec file") from exc
    return parse_table(table, str(path), path.resolve().parent)
