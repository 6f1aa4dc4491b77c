"""Runs a loaded spec: picks the function's builder. No argv parsing, no printing."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, BinaryIO

from vmbuild.config import Loaded
from vmbuild.config.common import OutputOptions
from vmbuild.errors import SpecError
from vmbuild.output import BuildResult

# function -> module with build(spec, out, opts) (and stream(spec, sink) where it streams)
BUILDERS = {
    "buildImage": "vmbuild.image_build",
    "buildLayeredImage": "vmbuild.layers.layered",
    "streamLayeredImage": "vmbuild.layers.layered",
    "pullImage": "vmbuild.registry.pull",
    "exportImage": "vmbuild.export",
}
STREAMING = ("buildLayeredImage", "streamLayeredImage")


def build(loaded: Loaded, out: Path, opts: OutputOptions) -> BuildResult:
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    result: BuildResult = module.build(loaded.spec, out, opts)
    return result


def stream(loaded: Loaded, sink: BinaryIO) -> None:
    if loaded.function not in STREAMING:
        raise SpecError(
            f"vmbuild stream works with streamLayeredImage specs, not {loaded.function}",
            'set function = "streamLayeredImage", or use vmbuild build',
        )
    module: Any = importlib.import_module(BUILDERS[loaded.function])
    module.stream(loaded.spec, sink)
