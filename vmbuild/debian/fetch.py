"""The ``.deb`` files of a lock: downloaded in parallel into ``cache_dir()/debs`` by
SHA256 (each checked as it arrives, before it is kept), each read into
``debs/unpacked/<sha256>`` (:mod:`vmbuild.debian.debfile`) as soon as it is there,
while the others download. A second build downloads and reads nothing.

Reading a package is CPU (xz mostly, which frees the GIL): a few are read at a time
(two a core, at most four), the largest first, so the longest does not start last."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from vmbuild.cache import cache_dir
from vmbuild.debian import debfile
from vmbuild.debian.lock import Locked

log = logging.getLogger("vmbuild")
WORKERS = 8  # downloads at a time
READERS = min(4, 2 * (os.cpu_count() or 1))  # packages read at a time


def debs_dir() -> Path:
    return cache_dir() / "debs"


def deb_path(pkg: Locked) -> Path:
    return debs_dir() / f"{pkg.sha256}.deb"


def unpacked_path(pkg: Locked) -> Path:
    return debs_dir() / "unpacked" / pkg.sha256


def _download(mirror: str, pkg: Locked, readers: ThreadPoolExecutor) -> Future[Path]:
    """Download ``pkg`` (if not in the cache), then queue its reading."""
    deb = deb_path(pkg)
    if not deb.is_file():
        from vmbuild.debian.http import download  # (urllib3: only when downloading)

        download(f"{mirror}/{pkg.filename}", deb, pkg.size, pkg.sha256)
    return readers.submit(_read, deb, pkg)


def _read(deb: Path, pkg: Locked) -> Path:
    done = unpacked_path(pkg)
    done.parent.mkdir(parents=True, exist_ok=True)
    debfile.unpack(deb, done, f"{pkg.name} {pkg.version} ({pkg.filename})")
    return done


def fetch_all(mirror: str, packages: Sequence[Locked]) -> dict[str, Path]:
    """name -> the unpacked directory of each package (fetched as needed)."""
    debs_dir().mkdir(parents=True, exist_ok=True)
    done = {p.name: unpacked_path(p) for p in packages}
    missing = [p for p in packages if not debfile.is_current(done[p.name])]
    if not missing:
        return done
    log.info("fetching %d Debian packages", len(missing))
    largest = sorted(missing, key=lambda p: (-p.size, p.name))
    with ThreadPoolExecutor(READERS) as readers, ThreadPoolExecutor(WORKERS) as downloads:
        queued = [downloads.submit(_download, mirror, p, readers) for p in largest]
        for f in queued:
            f.result().result()
    return done
