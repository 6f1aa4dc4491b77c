"""The index scan: each paragraph under its first Package field, with its first
Provides and its Essential flag, the same on the quick path (every paragraph starts
with its Package field, as an archive's indexes do) and the general one."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from vmbuild.debian.http import MirrorError
from vmbuild.debian.index import RawIndex, candidate, load_index
from vmbuild.debian.release import IndexFile, ReleaseInfo

ARCHIVE = (
    b"Package: a\nVersion: 1\nProvides: x, y (= 2)\nDescription: d\n Package: not-a-field\n\n"
    b"Package: a\nVersion: 2\nEssential: yes\nProvides: z,\n w\n\n"
    b"Package: b\nEssential: no\nProvides: x\n"
)


def _scan(*texts: bytes) -> RawIndex:
    raw = RawIndex()
    for text in texts:
        raw.add_text(text)
    return raw


def test_an_archive_index_is_scanned() -> None:
    raw = _scan(ARCHIVE)
    assert raw.names() == ["a", "b"]
    assert [p.split("\n")[1] for p in raw.paragraphs("a")] == ["Version: 1", "Version: 2"]
    assert raw.paragraphs("b") == ["Package: b\nEssential: no\nProvides: x\n"]
    assert raw.provides == [("a", "x, y (= 2)"), ("a", "z,  w"), ("b", "x")]
    assert raw.essential() == {"a"}
    assert raw.paragraphs("c") == []


def test_pieces_and_components_add_up_in_order() -> None:
    first, _, rest = ARCHIVE.partition(b"\n\n")
    raw = _scan(first, rest)
    other = _scan(b"Package: c\nVersion: 1\n\nPackage: a\nVersion: 3\n")
    raw.extend(other)
    assert raw.names() == ["a", "b", "c"]
    assert [p.split("\n")[1] for p in raw.paragraphs("a")] == [
        "Version: 1",
        "Version: 2",
        "Version: 3",
    ]
    assert raw.provides == _scan(ARCHIVE).provides


def test_a_paragraph_not_led_by_its_package_field_is_scanned_too() -> None:
    raw = _scan(
        b"Version: 1\nPackage: a\nProvides: x\nProvides: y\n\nNo: package\n\n"
        b"Package: b\nEssential: yes\n"
    )
    assert raw.names() == ["a", "b"]
    assert raw.paragraphs("a") == ["Version: 1\nPackage: a\nProvides: x\nProvides: y"]
    assert raw.provides == [("a", "x")]
    assert raw.essential() == {"b"}


# N14: what InRelease vouches for, read from a file:// mirror

PARA = "Package: p{}\nVersion: 1\nArchitecture: all\nFilename: pool/p{}.deb\nSize: 5\nSHA256: {}\n"


def _index(n: int, description: str = "") -> bytes:
    return "\n".join(PARA.format(i, i, "a" * 64) + description for i in range(n)).encode()


def _load(tmp: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> RawIndex:
    """load_index over a file:// mirror whose InRelease vouches for ``files``."""
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp / "cache"))
    where = tmp / "m" / "dists" / "s" / "main" / "binary-amd64"
    where.mkdir(parents=True, exist_ok=True)
    listed = {}
    for name, data in files.items():
        (where / name).write_bytes(data)
        path = f"main/binary-amd64/{name}"
        listed[path] = IndexFile(path, len(data), hashlib.sha256(data).hexdigest())
    return load_index(f"file://{tmp / 'm'}", ReleaseInfo("s", "", listed), "main", "amd64")


@pytest.mark.parametrize(
    "files",
    [
        {"Packages.gz": gzip.compress(_index(50), mtime=0)[:-40]},  # s2-gzcorrupt
        {"Packages.gz": gzip.compress(_index(50), mtime=0), "Packages": _index(51)},
        {"Packages": os.urandom(3000)},  # s2-binindex
    ],
    ids=["truncated-gz", "other-size", "random-bytes"],
)
def test_a_corrupt_index_that_inrelease_vouches_for_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]
) -> None:
    """It read as an empty index: 'no package p1' instead."""
    with pytest.raises(MirrorError, match=r"is a corrupt index .*InRelease vouches for its hash"):
        _load(tmp_path, files, monkeypatch)
    assert not list((tmp_path / "cache" / "debian" / "index").iterdir())


def test_a_large_index_that_inrelease_vouches_for_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s2-huge: an index compressing more than 20 times was refused as 'something else
    than InRelease names'."""
    text = _index(2000, "Description: " + "x" * 2000 + "\n")
    packed = gzip.compress(text, mtime=0)
    assert len(text) > 20 * len(packed) + (1 << 20)
    raw = _load(tmp_path, {"Packages.gz": packed, "Packages": text}, monkeypatch)
    assert len(raw.first) == 2000


def test_an_index_larger_than_inrelease_says_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmbuild.debian import http, index

    monkeypatch.setattr(index, "MAX_INDEX", 100_000)
    with pytest.raises(MirrorError, match="more than 100000 bytes, the most vmbuild reads"):
        _load(tmp_path, {"Packages.gz": gzip.compress(_index(3000), mtime=0)}, monkeypatch)
    assert http.MAX_INDEX > 100_000


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("Filename", "pool/../../../../../etc/passwd", "unsafe Filename"),  # s2-pooldotdot
        ("Filename", "/etc/passwd", "unsafe Filename"),
        ("Filename", "pool/a b.deb", "unsafe Filename"),
        ("Size", "-5", "not a number"),
        ("Size", "5e3", "not a number"),
        ("SHA256", "abc", "SHA256 'abc'"),
    ],
)
def test_a_paragraph_with_an_unsafe_field_is_refused(field: str, value: str, why: str) -> None:
    para = PARA.format(1, 1, "a" * 64)
    good = candidate(para)
    assert (good.filename, good.size) == ("pool/p1.deb", 5)
    old = next(line for line in para.splitlines() if line.startswith(field + ":"))
    with pytest.raises(MirrorError, match=rf"the index gives package p1 1 .*{why}"):
        candidate(para.replace(old, f"{field}: {value}"))
