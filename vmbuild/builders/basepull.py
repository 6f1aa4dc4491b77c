"""A base image named by a pullImage table: pulled once into the cache, then a path.

The archive a pullImage spec gives is fixed by its digest, final name and tag, and its
hash is checked as it is written, so the cache keeps it under that hash and a later
build (or another spec naming the same image) uses it without asking the registry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild import cache
from vmbuild.config.base import BaseSource
from vmbuild.oci.output import OutputOptions

if TYPE_CHECKING:
    from vmbuild.config.pull import PullImageSpec
    from vmbuild.oci.reader import BaseImage

log = logging.getLogger("vmbuild")


def pulled_path(spec: PullImageSpec) -> Path:
    from vmbuild.registry.pulledcache import path_for

    return path_for(spec.sha256)


def base_path(source: BaseSource) -> Path:
    """The archive for ``source``: a path as it is, a pullImage pulled (or cached)."""
    if isinstance(source, Path):
        return source
    from vmbuild import remotecache
    from vmbuild.registry.pulledcache import remember, trusted

    path = pulled_path(source)
    cache.hold(path)  # (read until the build ends)
    key = source.sha256.hex()
    remotes = remotecache.current()
    if trusted(source.sha256) is not None:  # (a pull hard-links its output there)
        if remotes is not None:
            remotes.offer_file(remotecache.PULLED, key, path)
        return path
    if remotes is not None and remotes.fetch_file(remotecache.PULLED, key, path):
        remember(path, source.sha256)  # its hash was checked as it arrived
        return path
    from vmbuild.builders import pull_image

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("pulling %s@%s for fromImage", source.image_name, source.image_digest)
    pull_image.build(source, path, OutputOptions("docker-archive", "none"))
    if remotes is not None:
        remotes.offer_file(remotecache.PULLED, key, path)
    return path


def base_ref(source: BaseSource, base: BaseImage) -> str:
    """How the SBOM names a base image: the pulled reference, else the archive's tag."""
    if not isinstance(source, Path):
        return f"{source.image_name}@{source.image_digest}"
    return base.repo_tags[0] if base.repo_tags else source.name
