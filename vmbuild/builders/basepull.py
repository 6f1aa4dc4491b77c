"""A base image named by a pullImage table: pulled once into the cache, then a path.

The archive a pullImage spec gives is fixed by its digest, final name and tag, and its
hash is checked as it is written, so the cache keeps it under that hash and a later
build (or another spec naming the same image) uses it without asking the registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild.cache import cache_dir
from vmbuild.config.base import BaseSource
from vmbuild.oci.output import OutputOptions

if TYPE_CHECKING:
    from vmbuild.config.pull import PullImageSpec
    from vmbuild.oci.reader import BaseImage

log = logging.getLogger("vmbuild")


def pulled_path(spec: PullImageSpec) -> Path:
    return cache_dir() / "pulled" / f"{spec.sha256.hex()}.tar"


def base_path(source: BaseSource) -> Path:
    """The archive for ``source``: a path as it is, a pullImage pulled (or cached)."""
    if isinstance(source, Path):
        return source
    path = pulled_path(source)
    if path.is_file():
        return path
    from vmbuild.builders import pull_image

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("pulling %s@%s for fromImage", source.image_name, source.image_digest)
    pull_image.build(source, path, OutputOptions("docker-archive", "none"))
    return path


def base_ref(source: BaseSource, base: BaseImage) -> str:
    """How the SBOM names a base image: the pulled reference, else the archive's tag."""
    if not isinstance(source, Path):
        return f"{source.image_name}@{source.image_digest}"
    return base.repo_tags[0] if base.repo_tags else source.name
