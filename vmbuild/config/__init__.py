"""Spec loading: TOML -> one frozen dataclass per dockerTools function.

A spec file is one table of the manual's arguments; ``function`` picks the function
(default ``buildImage``). Each function's arguments are validated by its own module here,
so every check on user input lives in this package.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.config.common import Fields
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression
from vmbuild.oci.output import AttestOptions, OutputOptions

# function -> module with parse(fields, function)
PARSERS = {
    "buildImage": "vmbuild.config.build_image",
    "buildLayeredImage": "vmbuild.config.layered",
    "streamLayeredImage": "vmbuild.config.layered",
    "pullImage": "vmbuild.config.pull",
    "exportImage": "vmbuild.config.export",
    "mergeImages": "vmbuild.config.merge",
    "buildNixShellImage": "vmbuild.config.nixshell",
    "streamNixShellImage": "vmbuild.config.nixshell",
}


@dataclass(frozen=True)
class Loaded:
    function: str
    spec: Any
    # the spec's own sbom / sbomFormat / provenance (what the build states beside it)
    attest: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the spec file
    cache_from: tuple[str, ...] = ()  # the spec's cacheFrom (docker://HOST/REPO each)
    cache_to: str | None = None  # the spec's cacheTo


ATTEST_KEYS = {"sbom": bool, "sbomFormat": str, "provenance": bool}
SBOM_SUFFIX = {"spdx": ".spdx.json", "cyclonedx": ".cdx.json"}


def parse_table(table: dict[str, Any], where: str, base_dir: Path) -> Loaded:
    table = dict(table)
    function = table.pop("function", "buildImage")
    attest = {k: table.pop(k) for k in ATTEST_KEYS if k in table}
    for key, kind in ATTEST_KEYS.items():
        if key in attest and not isinstance(attest[key], kind):
            raise SpecError(
                f"{where}: {key} must be a {kind.__name__}, got {attest[key]!r}",
                'e.g. sbom = true, sbomFormat = "cyclonedx", provenance = true',
            )
    if function not in PARSERS:
        raise SpecError(
            f"{where}: unknown function {function!r}",
            f"use one of {', '.join(PARSERS)}",
        )
    cache_from, cache_to = _cache_keys(table, where)
    module = importlib.import_module(PARSERS[function])
    fields = Fields(table, where, base_dir)
    spec = module.parse(fields) if function == "pullImage" else module.parse(fields, function)
    return Loaded(function, spec, attest, cache_from=cache_from, cache_to=cache_to)


def attest_options(
    loaded: Loaded,
    out: Path,
    sbom: Path | None = None,
    sbom_format: str | None = None,
    provenance: Path | None = None,
) -> AttestOptions:
    """What the build states beside ``out``: the command line's paths win; the spec's
    ``sbom = true`` / ``provenance = true`` write beside the output (``OUT.spdx.json``
    or ``OUT.cdx.json``, ``OUT.intoto.json``)."""
    fmt = sbom_format or loaded.attest.get("sbomFormat") or "spdx"
    if sbom is None and loaded.attest.get("sbom"):
        sbom = out.with_name(out.name + SBOM_SUFFIX.get(fmt, ".sbom.json"))
    if provenance is None and loaded.attest.get("provenance"):
        provenance = out.with_name(out.name + ".intoto.json")
    return AttestOptions(sbom, fmt, provenance, loaded.source)


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
    loaded = parse_table(table, str(path), path.resolve().parent)
    return dataclasses.replace(loaded, source=path)
