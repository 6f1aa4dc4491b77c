"""The builders: one module per dockerTools function, reached through one typed table.

A builder turns a validated spec (:mod:`vmbuild.config`) into a result: it reads the
inputs the spec names, has the layers made (host steps, closures, the build VM, the
registry) and writes the image to --out.

- :mod:`.build_image`: buildImage.
- :mod:`.layered`: buildLayeredImage and streamLayeredImage.
- :mod:`.pull_image`: pullImage.
- :mod:`.export_image`: exportImage.
- :mod:`.merge_images`: mergeImages (nixpkgs', beyond the manual).
- :mod:`.nix_shell`: buildNixShellImage and streamNixShellImage (a recipe's build
  environment, made by the layered builder).

Beside them what they share: :mod:`.imageconfig` (the image config JSON),
:mod:`.basepull` (a pullImage ``fromImage``, pulled once into the cache) and
:mod:`.result` (what a build reports). :func:`build` and :func:`stream` are the entry
for the command line and the API: they pick the function's :class:`Builder` from
:data:`BUILDERS`. No argv parsing, no printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, NamedTuple, TypeVar

from vmbuild import cache
from vmbuild.builders.result import BuildResult
from vmbuild.errors import SpecError
from vmbuild.oci import layercheck
from vmbuild.oci.output import OutputOptions, resolve_out

if TYPE_CHECKING:
    from vmbuild.config import Loaded
    from vmbuild.config.build_image import BuildImageSpec
    from vmbuild.config.export import ExportImageSpec
    from vmbuild.config.layered import LayeredSpec
    from vmbuild.config.merge import MergeImagesSpec
    from vmbuild.config.nixshell import NixShellSpec
    from vmbuild.config.pull import PullImageSpec

Spec = TypeVar("Spec")


class Builder(NamedTuple, Generic[Spec]):
    """One dockerTools function: how its spec is built into --out, and streamed if it can."""

    build: Callable[[Spec, Path, OutputOptions], BuildResult]
    stream: Callable[[Spec, BinaryIO], None] | None = None
    layout: bool = False  # --format oci writes a layout directory (else a file)
    attests: bool = False  # it reports what went in (--sbom, --provenance)


# Each builder's module is imported when that function runs, not before: `vmbuild stream`
# starts without the other builders' imports.


def _build_image(spec: BuildImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import build_image

    return build_image.build(spec, out, opts)


def _build_layered(spec: LayeredSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import layered

    return layered.build(spec, out, opts)


def _stream_layered(spec: LayeredSpec, sink: BinaryIO) -> None:
    from vmbuild.builders import layered

    layered.stream(spec, sink)


def _pull_image(spec: PullImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import pull_image

    return pull_image.build(spec, out, opts)


def _export_image(spec: ExportImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import export_image

    return export_image.build(spec, out, opts)


def _merge_images(spec: MergeImagesSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import merge_images

    return merge_images.build(spec, out, opts)


def _build_nix_shell(spec: NixShellSpec, out: Path, opts: OutputOptions) -> BuildResult:
    from vmbuild.builders import nix_shell

    return nix_shell.build(spec, out, opts)


def _stream_nix_shell(spec: NixShellSpec, sink: BinaryIO) -> None:
    from vmbuild.builders import nix_shell

    nix_shell.stream(spec, sink)


_BUILD_IMAGE: Builder[BuildImageSpec] = Builder(_build_image, layout=True, attests=True)
_LAYERED: Builder[LayeredSpec] = Builder(_build_layered, _stream_layered, layout=True, attests=True)
_PULL_IMAGE: Builder[PullImageSpec] = Builder(_pull_image)
_EXPORT_IMAGE: Builder[ExportImageSpec] = Builder(_export_image)
_MERGE_IMAGES: Builder[MergeImagesSpec] = Builder(_merge_images)
_NIX_SHELL: Builder[NixShellSpec] = Builder(_build_nix_shell, _stream_nix_shell, layout=True)

# function -> its builder; the spec's type is the one config's parser gives for it
BUILDERS: dict[str, Builder[Any]] = {
    "buildImage": _BUILD_IMAGE,
    "buildLayeredImage": _LAYERED,
    "streamLayeredImage": _LAYERED,
    "pullImage": _PULL_IMAGE,
    "exportImage": _EXPORT_IMAGE,
    "mergeImages": _MERGE_IMAGES,
    "buildNixShellImage": _NIX_SHELL,
    "streamNixShellImage": _NIX_SHELL,
}


def build(loaded: Loaded, out: Path, opts: OutputOptions) -> BuildResult:
    """Build ``loaded`` into ``out`` (checked before any work; a symlink there is followed)."""
    builder = BUILDERS[loaded.function]
    layout = opts.format == "oci" and builder.layout
    if opts.format == "docker-archive":
        warn_on_suffix(out, opts.compression)
    target = resolve_out(out, directory=layout)
    if opts.attest.wanted:
        if not builder.attests:
            raise SpecError(
                f"--sbom and --provenance work with buildImage and buildLayeredImage specs, "
                f"not {loaded.function}",
                "drop them, or run vmbuild sbom on the image for its inventory",
            )
        from vmbuild.sbom.attest import check_paths

        check_paths(opts.attest)
    with _remembered_checks(), cache.holding():  # (the cache entries it reads: held)
        result = builder.build(loaded.spec, target, opts)
    return dataclasses.replace(result, out=out)


def _remembered_checks() -> contextlib.AbstractContextManager[None]:
    """Base layers checked once per version of their file (:mod:`vmbuild.oci.layercheck`),
    remembered in the user's cache."""
    return layercheck.remembering(cache.FileMemo(layercheck.MEMO_KIND))


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
    builder = BUILDERS[loaded.function]
    if builder.stream is None:
        raise SpecError(
            "vmbuild stream works with streamLayeredImage and streamNixShellImage specs, "
            f"not {loaded.function}",
            'set function = "streamLayeredImage" (or "streamNixShellImage"), or use vmbuild build',
        )
    with _remembered_checks(), cache.holding():
        builder.stream(loaded.spec, sink)
