"""A suite's ``Packages`` index: fetched (xz or gz), checked against the hash the
verified ``InRelease`` gives (each time it is read, from the cache too, where it is
kept by that hash), and parsed with python-debian as packages are looked at."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
from dataclasses import dataclass, field
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


def candidate(paragraph: str) -> Candidate:
    """One paragraph of a Packages index, parsed by python-debian."""
    p = Packages(paragraph)
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


_PACKAGE = re.compile(r"^Package:[ \t]*(\S+)", re.M)
_PROVIDES = re.compile(r"^Provides:(.*(?:\n[ \t].*)*)", re.M)
_ESSENTIAL = re.compile(r"^Essential:[ \t]*yes", re.M)


@dataclass
class RawIndex:
    """An index's paragraphs by package name, parsed only when a package is looked at
    (python-debian takes about a millisecond a paragraph; an index has 60,000). The
    ``Provides`` and ``Essential`` fields of all are found by a scan, for the virtual
    packages and the Essential set."""

    paragraphs: dict[str, list[str]] = field(default_factory=dict)
    provides: list[tuple[str, str]] = field(default_factory=list)  # (package, field)
    essential: set[str] = field(default_factory=set)

    def add_text(self, text: str) -> None:
        # Paragraphs are separated by blank lines (Debian Policy 5.1).
        for para in re.split(r"\n[ \t]*\n", text):
            m = _PACKAGE.search(para)
            if m is None:
                continue
            name = m.group(1)
            self.paragraphs.setdefault(name, []).append(para)
            prov = _PROVIDES.search(para)
            if prov is not None:
                self.provides.append((name, prov.group(1).replace("\n", " ").strip()))
            if _ESSENTIAL.search(para):
                self.essential.add(name)


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def fetch_index(mirror: str, release: ReleaseInfo, component: str, arch: str) -> str:
    """The text of the index of ``component`` for ``arch``."""
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
    cached = cache_dir() / "debian" / "index" / entry.sha256
    url = f"{mirror}/dists/{release.suite}/{entry.path}"
    data = cached.read_bytes() if cached.is_file() else get(url)
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256 or len(data) != entry.size:
        cached.unlink(missing_ok=True)
        raise MirrorError(
            f"{url} does not match the hash InRelease gives (expected {entry.sha256}, "
            f"got {got}); not used",
            "the mirror is inconsistent (perhaps mid-update); try again later",
        )
    if not cached.is_file():
        _store(cached, data)
    return _decompress(entry.path, data).decode("utf-8", "replace")


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
