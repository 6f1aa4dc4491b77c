"""A suite's ``Packages`` index: fetched (xz or gz), checked against the hash the
verified ``InRelease`` gives (each time it is read, from the cache too, where it is
kept by that hash), and parsed with python-debian as packages are looked at."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import lzma
import os
import queue
import re
import threading
import zlib
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from debian.deb822 import Packages

from vmbuild.cache import cache_dir
from vmbuild.debian.http import MirrorError, chunks
from vmbuild.debian.release import IndexFile, ReleaseInfo

T = TypeVar("T")
MAX_RATIO = 20  # an index's text is at most this many times its compressed size
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

    def extend(self, other: RawIndex) -> None:
        """Add the paragraphs of ``other`` (another component's index) after these."""
        base = len(self.texts)
        self.texts.extend(other.texts)
        for name, spans in other.spans.items():
            self.spans.setdefault(name, []).extend((t + base, a, b) for t, a, b in spans)
        self.provides.extend(other.provides)
        self.essential |= other.essential

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


def _inflater(name: str) -> Callable[[bytes], bytes]:
    """Decompresses ``name``'s bytes piece by piece (b"" at the end flushes)."""
    if not name.endswith((".gz", ".xz")):
        return lambda data: data
    make: Callable[[], Any] = (
        lzma.LZMADecompressor if name.endswith(".xz") else lambda: zlib.decompressobj(47)
    )
    state = [make()]

    def inflate(data: bytes) -> bytes:
        if not data:
            flush = getattr(state[0], "flush", None)  # (zlib's; lzma keeps nothing back)
            return bytes(flush()) if flush is not None else b""
        out = []
        while data:
            d = state[0]
            out.append(d.decompress(data))
            data = d.unused_data if d.eof else b""
            if d.eof:
                state[0] = make()  # a file of several members (streams)
        return b"".join(out)

    return inflate


def _decoded(
    source: Iterator[bytes],
    inflate: Callable[[bytes], bytes],
    digest: Any,
    keep: BinaryIO | None,
    sizes: list[int],
) -> Iterator[tuple[bytes, bool]]:
    """(text, whether it is the last) of each piece of ``source``, which is hashed into
    ``digest``, counted in ``sizes[0]`` and copied to ``keep`` on the way."""
    for piece in itertools.chain(source, [b""]):  # b"": the end
        digest.update(piece)
        sizes[0] += len(piece)
        if keep is not None:
            keep.write(piece)
        yield inflate(piece), not piece


def _ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """``items``, made by a thread of their own up to ``depth`` ahead of the caller
    (download and decompression, which free the GIL, overlap the scan); when the
    caller stops early, the thread stops at its next item and is waited for."""
    q: queue.Queue[tuple[int, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((0, item)):
                    return
            put((1, None))
        except BaseException as exc:  # given to the caller
            put((2, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="vmbuild-index", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == 0:
                yield value
            elif kind == 2:
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()


def _entry(mirror: str, release: ReleaseInfo, component: str, arch: str) -> IndexFile:
    base = f"{component}/binary-{arch}/Packages"
    # gz before xz: 40% more bytes, but a suite's index inflates in a fifth of the
    # time (0.15 s against 0.7 s); the extra bytes cost less at any speed above 7 MB/s
    for suffix in (".gz", ".xz", ""):
        entry = release.files.get(base + suffix)
        if entry is not None:
            return entry
    raise MirrorError(
        f"{mirror}/dists/{release.suite}: InRelease lists no {base} index",
        "check the suite, components and architecture",
    )


def load_index(mirror: str, release: ReleaseInfo, component: str, arch: str) -> RawIndex:
    """The index of ``component`` for ``arch``, scanned as its bytes arrive (from the
    mirror, or the cache where it is kept by the hash InRelease gives): decompressed
    and scanned piece by piece while the rest downloads, hashed meanwhile, and used
    only once the whole matches that hash (else nothing of it is kept)."""
    entry = _entry(mirror, release, component, arch)
    cached = cache_dir() / "debian" / "index" / entry.sha256
    url = f"{mirror}/dists/{release.suite}/{entry.path}"
    have = cached.is_file()
    source = chunks(f"file://{cached}" if have else url, entry.size)
    raw, digest, sizes = RawIndex(), hashlib.sha256(), [0]
    pending, text_size = b"", 0
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}")
    keep = None if have else open(tmp, "wb")  # noqa: SIM115 (closed below)
    try:
        decoded = _decoded(source, _inflater(entry.path), digest, keep, sizes)
        # closing: the reading thread is stopped and waited for on any way out
        with contextlib.closing(_ahead(decoded)) as pieces:
            for new, last in pieces:
                text = pending + new
                text_size += len(new)
                if text_size > MAX_RATIO * entry.size + (1 << 20):
                    raise MirrorError(
                        f"{url} decompresses to more than {MAX_RATIO} times its size; not used",
                        "the mirror serves something else than InRelease names; check the mirror",
                    )
                # whole paragraphs are scanned now; the last, unfinished one waits
                cut = len(text) if last else text.rfind(b"\n\n") + 2
                if cut >= 2:
                    raw.add_text(text[:cut])
                    text = text[cut:]
                pending = text
        if keep is not None:
            keep.close()
        got = digest.hexdigest()
        if got != entry.sha256 or sizes[0] != entry.size:
            cached.unlink(missing_ok=True)
            raise MirrorError(
                f"{url} does not match the hash InRelease gives (expected {entry.sha256}, "
                f"got {got}); not used",
                "the mirror is inconsistent (perhaps mid-update); try again later",
            )
        if not have:
            os.replace(tmp, cached)
    except (zlib.error, lzma.LZMAError, EOFError) as exc:
        cached.unlink(missing_ok=True)
        raise MirrorError(
            f"{url} does not decompress ({exc}); not used",
            "the mirror is inconsistent (perhaps mid-update); try again later",
        ) from exc
    finally:
        if keep is not None:
            keep.close()
        tmp.unlink(missing_ok=True)
    return raw
