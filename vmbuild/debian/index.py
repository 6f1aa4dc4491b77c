"""A suite's ``Packages`` index: fetched (xz or gz), checked against the hash the
verified ``InRelease`` gives, parsed with python-debian, and kept in the cache by that
hash (as parsed JSON) so it is parsed once."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from debian.deb822 import Packages

from vmbuild.cache import cache_dir
from vmbuild.debian.http import MirrorError, get
from vmbuild.debian.release import ReleaseInfo

FIELDS = ("Depends", "Pre-Depends", "Recommends", "Provides", "Conflicts", "Breaks")


@dataclass(frozen=True)
class Candidate:
    """One binary package as the index describes it."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    multi_arch: str = ""
    essential: bool = False
    priority: str = ""
    depends: str = ""
    pre_depends: str = ""
    recommends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""


def _from_paragraph(p: Packages) -> Candidate:
    return Candidate(
        name=p["Package"],
        version=p["Version"],
        architecture=p.get("Architecture", ""),
        filename=p.get("Filename", ""),
        size=int(p.get("Size", "0")),
        sha256=p.get("SHA256", ""),
        multi_arch=p.get("Multi-Arch", ""),
        essential=p.get("Essential", "") == "yes",
        priority=p.get("Priority", ""),
        depends=p.get("Depends", ""),
        pre_depends=p.get("Pre-Depends", ""),
        recommends=p.get("Recommends", ""),
        provides=p.get("Provides", ""),
        conflicts=p.get("Conflicts", ""),
        breaks=p.get("Breaks", ""),
    )


def parse_packages(text: str) -> list[Candidate]:
    return [
        _from_paragraph(p)
        for p in Packages.iter_paragraphs(text.splitlines(True), use_apt_pkg=False)
    ]


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def fetch_index(mirror: str, release: ReleaseInfo, component: str, arch: str) -> list[Candidate]:
    """The packages of ``component`` for ``arch`` (``Architecture: all`` included)."""
    base = f"{component}/binary-{arch}/Packages"
    for suffix in (".xz", ".gz", ""):
        entry = release.files.get(base + suffix)
        if entry is not None:
            break
    else:
        raise MirrorError(
            f"{mirror}/dists/{release.suite}: InRelease lists no {base} index",
            "check the suite, components and architecture",
        )
    cached = cache_dir() / "debian" / "index" / f"{entry.sha256}.json"
    if cached.is_file():
        return [Candidate(**c) for c in json.loads(cached.read_text())]
    url = f"{mirror}/dists/{release.suite}/{entry.path}"
    data = get(url)
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256 or len(data) != entry.size:
        raise MirrorError(
            f"{url} does not match the hash InRelease gives (expected {entry.sha256}, "
            f"got {got}); not used",
            "the mirror is inconsistent (perhaps mid-update); try again later",
        )
    found = parse_packages(_decompress(entry.path, data).decode("utf-8", "replace"))
    _store(cached, found)
    return found


def _store(path: Path, found: Iterable[Candidate]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps([asdict(c) for c in found]))
    os.replace(tmp, path)
