"""Runs a loaded spec: picks the function's builder. No argv parsing, no printing."""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from vmbuild.config import Loaded
from vmbuild.config.common import OutputOptions
from vmbuild.errors import SpecError
from vmbuild.output import BuildResult, resolve_out

# function -> module with build(spec, out, opts) (and stream(spec, sink) where it streams)
BUILDERS = {
    "buildImage": "vmbuild.image_build",
    "buildLayeredImage": "vmbuild.layers.layered",
    "streamLayeredImage": "vmbuild.layers.layered",
    "pullImage": "vmbuild.registry.pull",
    "exportImage": "vmbuild.export",
    "mergeImages": "vmbuild.image_merge",
}
STREAMING = ("buildLayeredImage", "streamLayeredImage")
LAYOUTS = ("buildImage", "buildLayeredImage", "streamLayeredImage")  # --format oci: a dir


def build(loaded: Loaded, out: Path, opts: OutputOptions) -> BuildResult:
    """Build ``loaded`` into ``out`` (checked before any work; a symlink there is followed)."""
    layout = opts.format == "oci" and loaded.function in LAYOUTS
    if opts.format == "docker-archive" and loaded.function != "exportImage":
        warn_on_suffix(out, opts.compression)
    target = resolve_out(out, directory=layout)
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    result: BuildResult = module.build(loaded.spec, target, opts)
    return dataclasses.replace(result, out=out)


# what an archive's name ends in, by how it is compressed
SUFFIXES = {"gzip": (".gz", ".tgz"), "zstd": (".zst", ".zstd"), "none": (".tar",)}


def warn_on_suffix(out: Path, compression: str) -> None:
    """Warn when --out's name says another compression than the archive will have."""
    name = out.name.lower()
    said = next((c for c, ends in SUFFIXES.items() if name.endswith(ends)), None)
    if said is None or said == compression:
        return
    flag = f"--compress {said}"
    warnings.warn(
        f"--out {out.name} looks {said if said != 'none' else 'uncompressed'}, but the "
        f"archive is {compression if compression != 'none' else 'uncompressed'}: pass "
        f"{flag} (or compressor in the spec), or rename it",
        UserWarning,
        2,
    )


def stream(loaded: Loaded, sink: BinaryIO) -> None:
    if loaded.function not in STREAMING:
        raise SpecError(
            f"vmbuild stream works with streamLayeredImage specs, not {loaded.function}",
            'set function = "streamLayeredImage", or use vmbuild build',
        )
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    module.stream(loaded.spec, sink)
