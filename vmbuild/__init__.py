"""vmbuild's Python API: dockerTools' functions with snake_case arguments.

Each function takes the manual's arguments in snake_case (``copy_to_root``,
``from_image``, ``run_as_root``, ``disk_size``, ``build_vm_memory_size`` …), validates
them exactly as a TOML spec would be, writes the image to ``out`` and returns a
:class:`BuildResult` (the manual's passthru: ``image_tag``, ``build_args``, layers,
config digest). Relative paths resolve against ``base_dir`` (default: the working
directory)::

    import vmbuild
    result = vmbuild.build_image(name="hello", copy_to_root=["./root", "fakeNss"],
                                 config={"Cmd": ["/bin/hello"]}, out="hello.tar.gz")
    print(result.image_tag)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild.errors import VmbuildError

if TYPE_CHECKING:  # the API imports its machinery on first use: `vmbuild --help` stays fast
    from typing import Any, BinaryIO

    from vmbuild.builders.result import BuildResult
    from vmbuild.oci.compress import Compression

__all__ = [
    "SHADOW_SETUP",
    "BuildResult",
    "VmbuildError",
    "build_image",
    "build_layered_image",
    "build_nix_shell_image",
    "export_image",
    "merge_images",
    "pull_image",
    "stream_layered_image",
    "stream_nix_shell_image",
]

# Names whose camelCase is not a plain conversion of the snake_case form.
_SPECIAL = {"build_vm_memory_size": "buildVMMemorySize", "sha256": "sha256", "hash": "hash"}


def _camel(name: str) -> str:
    if name in _SPECIAL:
        return _SPECIAL[name]
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _table(function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {"function": function}
    for key, value in kwargs.items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        table[_camel(key)] = value
    return table


def _run(
    function: str,
    out: str | Path,
    format: str,
    compress: Compression | None,
    level: int | None,
    base_dir: str | Path | None,
    kwargs: dict[str, Any],
) -> BuildResult:
    from vmbuild.builders import build
    from vmbuild.config import output_options, parse_table

    loaded = parse_table(_table(function, kwargs), function, Path(base_dir or ".").resolve())
    return build(loaded, Path(out), output_options(loaded, format, compress, level))


def build_image(
    *,
    out: str | Path,
    format: str = "docker-archive",
    compress: Compression | None = None,
    level: int | None = None,
    base_dir: str | Path | None = None,
    **kwargs: Any,
) -> BuildResult:
    """dockerTools.buildImage."""
    return _run("buildImage", out, format, compress, level, base_dir, kwargs)


def build_layered_image(
    *,
    out: str | Path,
    format: str = "docker-archive",
    compress: Compression | None = None,
    level: int | None = None,
    base_dir: str | Path | None = None,
    **kwargs: Any,
) -> BuildResult:
    """dockerTools.buildLayeredImage."""
    return _run("buildLayeredImage", out, format, compress, level, base_dir, kwargs)


def stream_layered_image(
    *, sink: BinaryIO, base_dir: str | Path | None = None, **kwargs: Any
) -> None:
    """dockerTools.streamLayeredImage: the uncompressed docker-archive, written to ``sink``."""
    from vmbuild.builders import stream
    from vmbuild.config import parse_table

    table = _table("streamLayeredImage", kwargs)
    stream(parse_table(table, "streamLayeredImage", Path(base_dir or ".").resolve()), sink)


def pull_image(
    *,
    out: str | Path,
    format: str = "docker-archive",
    base_dir: str | Path | None = None,
    **kwargs: Any,
) -> BuildResult:
    """dockerTools.pullImage."""
    return _run("pullImage", out, format, None, None, base_dir, kwargs)


def export_image(
    *, out: str | Path, base_dir: str | Path | None = None, **kwargs: Any
) -> BuildResult:
    """dockerTools.exportImage: the merged filesystem as one uncompressed tar."""
    return _run("exportImage", out, "docker-archive", "none", None, base_dir, kwargs)


def merge_images(
    *,
    images: list[str | Path],
    out: str | Path,
    compress: Compression | None = None,
    level: int | None = None,
    base_dir: str | Path | None = None,
    **kwargs: Any,
) -> BuildResult:
    """dockerTools.mergeImages: the docker-archives ``images`` as one docker-archive,
    compressed like the last of them unless ``compress`` (or ``compressor``) says."""
    kwargs["images"] = images
    return _run("mergeImages", out, "docker-archive", compress, level, base_dir, kwargs)


def build_nix_shell_image(
    *,
    drv: dict[str, Any],
    out: str | Path,
    format: str = "docker-archive",
    compress: Compression | None = None,
    level: int | None = None,
    base_dir: str | Path | None = None,
    **kwargs: Any,
) -> BuildResult:
    """dockerTools.buildNixShellImage: ``drv`` is the recipe table, its keys as in a spec
    (they are the environment's variable names: ``nativeBuildInputs``, ``shellHook``)."""
    kwargs["drv"] = drv
    return _run("buildNixShellImage", out, format, compress, level, base_dir, kwargs)


def stream_nix_shell_image(
    *, sink: BinaryIO, drv: dict[str, Any], base_dir: str | Path | None = None, **kwargs: Any
) -> None:
    """dockerTools.streamNixShellImage: the uncompressed docker-archive, written to ``sink``."""
    from vmbuild.builders import stream
    from vmbuild.config import parse_table

    kwargs["drv"] = drv
    table = _table("streamNixShellImage", kwargs)
    stream(parse_table(table, "streamNixShellImage", Path(base_dir or ".").resolve()), sink)


def __getattr__(name: str) -> Any:
    if name == "BuildResult":
        from vmbuild.builders.result import BuildResult

        return BuildResult
    if name == "SHADOW_SETUP":
        from vmbuild.resources import shadow_setup

        return shadow_setup()
    raise AttributeError(name)
