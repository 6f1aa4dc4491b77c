"""The ``.deb`` files of a lock: downloaded in parallel into ``cache_dir()/debs`` by
SHA256 (each checked before it is kept), then read once into ``debs/unpacked/<sha256>``
(:mod:`vmbuild.debian.debfile`). A second build downloads and reads nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vmbuild.cache import cache_dir
from vmbuild.debian import debfile
from vmbuild.debian.http import download
from vmbuild.debian.lock import Locked

log = logging.getLogger("vmbuild")
WORKERS = 8


def debs_dir() -> Path:
    return cache_dir() / "debs"


def deb_path(pkg: Locked) -> Path:
    return debs_dir() / f"{pkg.sha256}.deb"


def unpacked_path(pkg: Locked) -> Path:
    return debs_dir() / "unpacked" / pkg.sha256


def _one(mirror: str, pkg: Locked) -> Path:
    done = unpacked_path(pkg)
    if debfile.is_current(done):
        return done
    deb = deb_path(pkg)
    if not deb.is_file():
        download(f"{mirror}/{pkg.filename}", deb, pkg.size, pkg.sha256)
    done.parent.mkdir(parents=True, exist_ok=True)
    debfile.unpack(deb, done, f"{pkg.name} {pkg.version} ({pkg.filename})")
    return done


def fetch_all(mirror: str, packages: Sequence[Locked]) -> dict[str, Path]:
    """name -> the unpacked directory of each package (fetched as needed)."""
    debs_dir().mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not debfile.is_current(unpacked_path(p))]
    if missing:
        log.info("fetching %d Debian packages", len(missing))
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {p.name: pool.submit(_one, mirror, p) for p in packages}
        return {name: f.result() for name, f in futures.items()}
