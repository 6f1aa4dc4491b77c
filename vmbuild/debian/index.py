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
from itertools import repeat as _repeat
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from debian.deb822 import Packages
from isal import isal_zlib

from vmbuild.cache import cache_dir
from vmbuild.debian.http import MAX_INDEX, MirrorError, chunks
from vmbuild.debian.lock import pool_path_problem, size_problem
from vmbuild.debian.release import IndexFile, ReleaseInfo
from vmbuild.signals import Stop

T = TypeVar("T")
_ISAL_ERROR = cast(type[BaseException], isal_zlib.error)
_SHA256 = re.compile(r"[0-9a-f]{64}")
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
    """One paragraph of a Packages index, parsed by python-debian; MirrorError when
    what a lock would pin is missing or malformed (its Filename a plain relative path
    inside the mirror, its Size a number, its SHA256 a hash)."""
    p = Packages(paragraph)
    name, version = p.get("Package", ""), p.get("Version", "")
    filename, size, sha256 = p.get("Filename", ""), p.get("Size", ""), p.get("SHA256", "")
    problem = (
        (not version and "no Version")
        or pool_path_problem(filename)
        or (not (size.isascii() and size.isdigit()) and f"a Size {size!r} that is not a number")
        or size_problem(int(size))
        or (not _SHA256.fullmatch(sha256) and f"a SHA256 {sha256!r} that is not one")
    )
    if problem:
        raise MirrorError(
            f"the index gives package {name} {version} {problem}; not used",
            "the mirror's index is malformed or was crafted; check the mirror",
        )
    return Candidate(
        name=name,
        version=version,
        architecture=p.get("Architecture", ""),
        filename=filename,
        size=int(size),
        sha256=sha256,
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


# A field at the start of a paragraph (``match``) or of a later line (``search``).
_PACKAGE_FIRST = re.compile(rb"Package:[ \t]*(\S+)")
_PACKAGE_LATER = re.compile(rb"\nPackage:[ \t]*(\S+)")
# Over a whole text, a pattern that starts with a literal newline lets the regex engine
# skip ahead with a fast search (``^`` in MULTILINE mode tries every byte)
_PROVIDES = re.compile(rb"\nProvides:(.*(?:\n[ \t].*)*)")
_ESSENTIAL_ANY = re.compile(rb"(?:^|\n)Essential:[ \t]*yes")


def _is_essential(para: bytes) -> bool:
    return _ESSENTIAL_ANY.search(para) is not None


@dataclass
class RawIndex:
    """An index's paragraphs by package name, parsed only when a package is looked at
    (python-debian takes about a millisecond a paragraph; an index has 60,000). The
    ``Provides`` fields of all are found by a scan, for the virtual packages (and
    their ``Essential`` fields by one when the Essential set is asked for). Names and
    texts are bytes: as text, one non-ASCII character would make a string 2 or 4 bytes
    a character, and 60,000 names would be decoded for the few hundred a resolution
    looks at."""

    first: dict[bytes, bytes] = field(default_factory=dict)  # name -> its first paragraph
    more: dict[bytes, list[bytes]] = field(default_factory=dict)  # name -> its others
    provides: list[tuple[str, str]] = field(default_factory=list)  # (package, field)
    _essential: set[str] | None = None

    def essential(self) -> set[str]:
        """The packages with ``Essential: yes`` (found when first asked: most
        resolutions do not ask)."""
        if self._essential is None:
            found = {n for n, p in self.first.items() if b"Essential:" in p and _is_essential(p)}
            found |= {n for n, ps in self.more.items() if any(map(_is_essential, ps))}
            self._essential = {n.decode("ascii", "replace") for n in found}
        return self._essential

    def paragraphs(self, name: str) -> list[str]:
        key = name.encode("utf-8", "surrogateescape")
        got = self.first.get(key)
        if got is None:
            return []
        return [p.decode("utf-8", "replace") for p in (got, *self.more.get(key, ()))]

    def names(self) -> list[str]:
        return sorted(n.decode("ascii", "replace") for n in self.first)

    def _add(self, name: bytes, para: bytes) -> None:
        if name not in self.first:
            self.first[name] = para
        else:
            self.more.setdefault(name, []).append(para)

    def extend(self, other: RawIndex) -> None:
        """Add the paragraphs of ``other`` (another component's index) after these."""
        if not self.first:  # (the first: taken as it is, 60,000 names not copied)
            self.first, self.more = other.first, other.more
            self.provides = other.provides
            return
        for name, para in other.first.items():
            self._add(name, para)
            for later in other.more.get(name, ()):
                self._add(name, later)
        self.provides.extend(other.provides)

    def add_text(self, text: bytes) -> None:
        """Index the paragraphs of ``text`` (whole ones: separated by blank lines,
        Debian Policy 5.1), each under its first ``Package`` field (one without is
        skipped), and note their Provides fields.

        The work per paragraph is done by C loops (split, regex scans over the whole
        text, ``dict(zip())``) when each paragraph starts with its only Package field,
        as in every index a Debian archive publishes; a paragraph at a time otherwise.
        """
        paras = text.split(b"\n\n")
        names = _PACKAGE_LATER.findall(text)
        head = _PACKAGE_FIRST.match(text)
        if head is not None:
            names.insert(0, head.group(1))
        if paras and not paras[-1].strip():
            paras.pop()  # (what follows the last blank line: nothing)
        simple = len(names) == len(paras) and all(
            map(bytes.startswith, paras, _repeat(b"Package:"))
        )
        if not simple:
            return self._add_slowly(paras)
        new = dict(zip(names, paras, strict=True))
        if len(new) == len(names) and not (new.keys() & self.first.keys()):
            self.first.update(new)
        else:  # a name twice (several versions): in order
            for name, para in zip(names, paras, strict=True):
                self._add(name, para)
        # each paragraph's end offset in text, for the fields found by a scan
        ends = list(itertools.accumulate(len(p) + 2 for p in paras))
        for m in _PROVIDES.finditer(text):
            i = bisect_right(ends, m.start())
            if i < len(paras) and not _seen(
                paras[i], m.start() - (ends[i - 1] if i else 0), b"\nProvides:"
            ):
                name_ = names[i].decode("ascii", "replace")
                value = m.group(1).decode("utf-8", "replace")
                self.provides.append((name_, value.replace("\n", " ").strip()))

    def _add_slowly(self, paras: list[bytes]) -> None:
        for para in paras:
            m = _PACKAGE_FIRST.match(para) or _PACKAGE_LATER.search(para)
            if m is None:
                continue
            self._add(m.group(1), para)
            name = m.group(1).decode("ascii", "replace")
            value = _PROVIDES.search(b"\n" + para)
            if value is not None:
                self.provides.append(
                    (name, value.group(1).decode("utf-8", "replace").replace("\n", " ").strip())
                )


def _seen(para: bytes, at: int, what: bytes) -> bool:
    """Whether ``para`` has ``what`` before offset ``at`` (a field's first line wins)."""
    return para.find(what, 0, at) >= 0


def _inflater(name: str) -> Callable[[bytes], bytes]:
    """Decompresses ``name``'s bytes piece by piece (b"" at the end flushes); EOFError
    when the compressed data ends inside a stream (a truncated file)."""
    if not name.endswith((".gz", ".xz")):
        return lambda data: data
    make: Callable[[], Any] = (
        # (ISA-L's inflate: a third faster than zlib's, the same bytes)
        lzma.LZMADecompressor if name.endswith(".xz") else lambda: isal_zlib.decompressobj(47)
    )
    state = [make()]
    begun = [False]  # the current stream has been given bytes

    def inflate(data: bytes) -> bytes:
        if not data:
            flush = getattr(state[0], "flush", None)  # (zlib's; lzma keeps nothing back)
            rest = bytes(flush()) if flush is not None else b""
            if begun[0] and not state[0].eof:
                raise EOFError("the compressed data ends before its stream does")
            return rest
        out = []
        while data:
            d = state[0]
            begun[0] = True
            out.append(d.decompress(data))
            data = d.unused_data if d.eof else b""
            if d.eof:
                state[0] = make()  # a file of several members (streams)
                begun[0] = False
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


def _ahead(
    items: Iterator[T], wake: Callable[[], None], depth: int = 2
) -> Generator[T, None, None]:
    """``items``, made by a thread of their own up to ``depth`` ahead of the caller
    (download and decompression, which free the GIL, overlap the scan); when the
    caller stops early (an error, Ctrl-C), ``wake`` is called (to end a read blocked on
    the mirror), and the thread stops at its next item and is waited for."""
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
        if thread.is_alive():
            wake()
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
    only once the whole matches that hash (else nothing of it is kept). Its text is
    bounded by the size InRelease gives it (when it lists the plain index), else by
    :data:`~vmbuild.debian.http.MAX_INDEX`; text that is no index (it names no
    package) or a compressed stream cut short is a corrupt index."""
    entry = _entry(mirror, release, component, arch)
    cached = cache_dir() / "debian" / "index" / entry.sha256
    url = f"{mirror}/dists/{release.suite}/{entry.path}"
    plain = release.files.get(f"{component}/binary-{arch}/Packages")
    text_limit = min(MAX_INDEX, plain.size) if plain is not None else MAX_INDEX
    have = cached.is_file()
    stop = Stop()
    source = chunks(f"file://{cached}" if have else url, entry.size, stop)
    raw, digest, sizes = RawIndex(), hashlib.sha256(), [0]
    pending, text_size, blank = b"", 0, True
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}")
    keep = None if have else open(tmp, "wb")  # noqa: SIM115 (closed below)
    try:
        decoded = _decoded(source, _inflater(entry.path), digest, keep, sizes)
        # closing: the reading thread is stopped and waited for on any way out
        with contextlib.closing(_ahead(decoded, stop.stop)) as pieces:
            for new, last in pieces:
                text = pending + new
                text_size += len(new)
                blank = blank and not new.strip()
                if text_size > text_limit:
                    raise MirrorError(f"{url} {_too_large(text_limit, plain)}; not used", _CHECK)
                # whole paragraphs are scanned now; the last, unfinished one waits
                cut = len(text) if last else text.rfind(b"\n\n")
                if cut >= 0:
                    raw.add_text(text[:cut])
                    text = text[cut + 2 :]
                pending = text
        if keep is not None:
            keep.close()
        _check_hash(url, entry, digest.hexdigest(), sizes[0], cached)
        if plain is not None and text_size != plain.size:
            raise EOFError(f"its text is {text_size} bytes, not the {plain.size} InRelease gives")
        if not raw.first and not blank:
            raise EOFError("it names no package")
        if not have:
            os.replace(tmp, cached)
    except (zlib.error, _ISAL_ERROR, lzma.LZMAError, EOFError) as exc:
        cached.unlink(missing_ok=True)
        if sizes[0] > entry.size:  # (the byte past the end was inflated: not the index)
            _check_hash(url, entry, digest.hexdigest(), sizes[0], cached)
        vouched = sizes[0] == entry.size and digest.hexdigest() == entry.sha256
        raise MirrorError(
            f"{url} is a corrupt index ({exc})"
            + (", although InRelease vouches for its hash" if vouched else "")
            + "; not used",
            "the mirror publishes a broken index; try again later or use another mirror"
            if vouched
            else "the mirror is inconsistent (perhaps mid-update); try again later",
        ) from exc
    finally:
        if keep is not None:
            keep.close()
        tmp.unlink(missing_ok=True)
    return raw


def _check_hash(url: str, entry: IndexFile, got: str, size: int, cached: Path) -> None:
    if got != entry.sha256 or size != entry.size:
        cached.unlink(missing_ok=True)
        raise MirrorError(
            f"{url} does not match the hash InRelease gives (expected {entry.sha256}, "
            f"got {got}); not used",
            "the mirror is inconsistent (perhaps mid-update); try again later",
        )


def _too_large(limit: int, plain: IndexFile | None) -> str:
    if plain is not None and limit == plain.size:
        return f"decompresses to more than the {limit} bytes InRelease gives its text"
    return f"decompresses to more than {limit} bytes, the most vmbuild reads of an index"


_CHECK = "the mirror's index does not match its InRelease, or is not one; check the mirror"
