"""A suite's ``Packages`` index: fetched (xz or gz), checked against the hash the
verified ``InRelease`` gives (each time it is read, from the cache too, where it is
kept by that hash), and parsed with python-debian as packages are looked at."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
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


# Fields at the start of a line. Over a whole index, a pattern that starts with a
# literal newline lets the regex engine skip ahead with a fast search (``^`` in
# MULTILINE mode tries every byte: ten times slower); the text's first line is
# matched apart.
_PACKAGE = rb"Package:[ \t]*(\S+)"
_PROVIDES = rb"Provides:(.*(?:\n[ \t].*)*)"
_ESSENTIAL = rb"Essential:[ \t]*(yes)"
_BLANK = re.compile(rb"\n\n")
_COMPILED: dict[bytes, tuple[re.Pattern[bytes], re.Pattern[bytes]]] = {
    body: (re.compile(body), re.compile(b"\n" + body)) for body in (_PACKAGE, _PROVIDES, _ESSENTIAL)
}


def _line_starts(body: bytes, text: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, first group) of each line of ``text`` that ``body`` matches at its start."""
    first, rest = _COMPILED[body]
    m = first.match(text)
    if m is not None:
        yield 0, m.group(1)
    for m in rest.finditer(text):
        yield m.start() + 1, m.group(1)


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
        """Index the paragraphs of ``text``: each pattern is searched once over the
        whole text (a search per paragraph costs a second on a suite's index) and each
        hit is given to the paragraph it falls in."""
        which = len(self.texts)
        self.texts.append(text)
        # Paragraphs are separated by blank lines (Debian Policy 5.1): paragraph i
        # ends at ends[i] and starts 2 bytes after ends[i - 1].
        ends = [m.start() for m in _BLANK.finditer(text)]
        ends.append(len(text))
        named: dict[int, str] = {}  # paragraph -> its package (the first Package field)
        for at, value in _line_starts(_PACKAGE, text):
            i = bisect_right(ends, at)
            if i not in named:
                named[i] = value.decode("ascii", "replace")
        for i, name in named.items():
            start = ends[i - 1] + 2 if i else 0
            self.spans.setdefault(name, []).append((which, start, ends[i]))
        seen: set[int] = set()
        for at, value in _line_starts(_PROVIDES, text):
            i = bisect_right(ends, at)
            if i in named and i not in seen:
                seen.add(i)
                field_ = value.decode("utf-8", "replace")
                self.provides.append((named[i], field_.replace("\n", " ").strip()))
        for at, _ in _line_starts(_ESSENTIAL, text):
            i = bisect_right(ends, at)
            if i in named:
                self.essential.add(named[i])


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def fetch_index(mirror: str, release: ReleaseInfo, component: str, arch: str) -> bytes:
    """The text of the index of ``component`` for ``arch``."""
    base = f"{component}/binary-{arch}/Packages"
    # gz before xz: 40% more bytes, but a suite's index inflates in a fifth of the
    # time (0.15 s against 0.7 s); the extra bytes cost less at any speed above 7 MB/s
    for suffix in (".gz", ".xz", ""):
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
