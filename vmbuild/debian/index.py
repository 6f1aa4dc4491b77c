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


_PACKAGE = re.compile(rb"^Package:[ \t]*(\S+)", re.M)
_PROVIDES = re.compile(rb"^Provides:(.*(?:\n[ \t].*)*)", re.M)
_ESSENTIAL = re.compile(rb"^Essential:[ \t]*yes", re.M)


@dataclass
class RawIndex:
    """An index's paragraphs by package name, parsed only when a package is looked at
    (python-debian takes about a millisecond a paragraph; an index has 60,000). The
    ``Provides`` and ``Essential`` fields of all are found by a scan, for the virtual
    packages and the Essential set."""

    # name -> (text, start, end) of each of its paragraphs: spans of the index's one
    # string, not copies (an index is 50 MB of text)
    spans: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    texts: list[bytes] = field(default_factory=list)  # bytes: as text, one non-ASCII
    # character would make the whole string 2 or 4 bytes a character
    provides: list[tuple[str, str]] = field(default_factory=list)  # (package, field)
    essential: set[str] = field(default_factory=set)

    def paragraphs(self, name: str) -> list[str]:
        return [
            self.texts[t][a:b].decode("utf-8", "replace") for t, a, b in self.spans.get(name, [])
        ]

    def add_text(self, text: bytes) -> None:
        which = len(self.texts)
        self.texts.append(text)
        start, size = 0, len(text)
        while start < size:
            # Paragraphs are separated by blank lines (Debian Policy 5.1).
            end = text.find(b"\n\n", start)
            end = size if end < 0 else end
            m = _PACKAGE.search(text, start, end)
            if m is not None:
                name = m.group(1).decode("ascii", "replace")
                self.spans.setdefault(name, []).append((which, start, end))
                prov = _PROVIDES.search(text, start, end)
                if prov is not None:
                    value = prov.group(1).decode("utf-8", "replace")
                    self.provides.append((name, value.replace("\n", " ").strip()))
                if _ESSENTIAL.search(text, start, end):
                    self.essential.add(name)
            start = end + 2


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def fetch_index(mirror: str, release: ReleaseInfo, component: str, arch: str) -> bytes:
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
    return _decompress(entry.path, data)


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
