"""Runs a loaded spec: picks the function's builder. No argv parsing, no printing."""

from __future__ import annotations

import dataclasses
import importlib
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
}
STREAMING = ("buildLayeredImage", "streamLayeredImage")
LAYOUTS = ("buildImage", "buildLayeredImage", "streamLayeredImage")  # --format oci: a dir


def build(loaded: Loaded, out: Path, opts: OutputOptions) -> BuildResult:
    """Build ``loaded`` into ``out`` (checked before any work; a symlink there is followed)."""
    layout = opts.format == "oci" and loaded.function in LAYOUTS
    target = resolve_out(out, directory=layout)
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    result: BuildResult = module.build(loaded.spec, target, opts)
    return dataclasses.replace(result, out=out)


def stream(loaded: Loaded, sink: BinaryIO) -> None:
    if loaded.function not in STREAMING:
        raise SpecError(
            f"vmbuild stream works with streamLayeredImage specs, not {loaded.function}",
            'set function = "streamLayeredImage", or use vmbuild build',
        )
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    module.stream(loaded.spec, sink)
