"""The scan of a Packages index (one pass, piece by piece as it arrives, checked against
InRelease's hash) and the providers found from it."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vmbuild.debian import http
from vmbuild.debian.http import MirrorError
from vmbuild.debian.index import RawIndex, load_index
from vmbuild.debian.lock import Request
from vmbuild.debian.release import IndexFile, ReleaseInfo
from vmbuild.debian.resolve import Universe, resolve

INDEX = (
    b"Package: mawk\nVersion: 1.3\nArchitecture: amd64\nProvides: awk,\n awk-any (= 1)\n"
    b"Essential: yes\n\n"
    b"Description-only: no Package field here\n\n\n"
    b"Version: 2\nPackage: gawk\nArchitecture: amd64\nProvides: awk (= 5), gawk-doc\n"
    b"Description: GNU awk\n Package: not-a-field\n Provides: not-a-field\n\n"
    b"Package: mawk\nVersion: 1.4\nArchitecture: amd64\nEssential: no\n"
)


def test_scan_finds_paragraphs_provides_and_essential() -> None:
    raw = RawIndex()
    raw.add_text(INDEX)
    assert sorted(raw.spans) == ["gawk", "mawk"]
    assert len(raw.spans["mawk"]) == 2
    assert raw.paragraphs("gawk")[0].lstrip().startswith("Version: 2\nPackage: gawk\n")
    assert raw.paragraphs("mawk")[1].endswith("Essential: no\n")
    assert raw.provides == [("mawk", "awk,  awk-any (= 1)"), ("gawk", "awk (= 5), gawk-doc")]
    assert raw.essential == {"mawk"}


def test_scan_matches_fields_on_the_first_line() -> None:
    raw = RawIndex()
    raw.add_text(b"Provides: x\nPackage: p\nEssential: yes\n")
    raw.add_text(b"Essential: yes\nPackage: q\n")
    assert raw.spans == {"p": [(0, 0, 38)], "q": [(1, 0, 26)]}
    assert raw.provides == [("p", "x")]
    assert raw.essential == {"p", "q"}


def test_providers_parse_only_what_names_the_virtual_package() -> None:
    raw = RawIndex()
    raw.add_text(INDEX)
    universe = Universe(raw, "amd64")
    # each provider's newest version that provides it (mawk 1.4 provides nothing)
    got = [(c.name, c.version, v) for c, v in universe.providers("awk")]
    assert got == [("mawk", "1.3", None), ("gawk", "2", "5")]
    assert [(c.version, v) for c, v in universe.providers("awk-any")] == [("1.3", "1")]
    assert universe.providers("gawk-doc")[0][0].name == "gawk"
    assert universe.providers("not-a-field") == []
    assert universe.providers("gawk") == []


def _release(tmp_path: Path, name: str, data: bytes, size: int | None = None) -> ReleaseInfo:
    (tmp_path / "dists" / "s" / "main" / "binary-amd64").mkdir(parents=True)
    path = f"main/binary-amd64/{name}"
    (tmp_path / "dists" / "s" / path).write_bytes(data)
    entry = IndexFile(path, len(data) if size is None else size, hashlib.sha256(data).hexdigest())
    return ReleaseInfo("s", "", {path: entry})


def _many(n: int) -> bytes:
    return b"".join(
        b"Package: p%d\nVersion: 1\nProvides: v%d\n%s\n"
        % (i, i % 7, b"Essential: yes\n" * (i == 5))
        for i in range(n)
    )


@pytest.mark.parametrize("name", ["Packages.gz", "Packages.xz", "Packages"])
def test_load_index_scans_pieces_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text = _many(300)
    compress: dict[str, Callable[[bytes], bytes]] = {"Packages.gz": gzip.compress}
    compress["Packages.xz"] = lzma.compress
    data = compress.get(name, bytes)(text)
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(http, "CHUNK", 97)  # paragraphs split across pieces
    release = _release(tmp_path, name, data)
    whole = RawIndex()
    whole.add_text(text)
    for _ in range(2):  # from the mirror, then from the cache
        got = load_index(f"file://{tmp_path}", release, "main", "amd64")
        assert len(got.texts) > 1
        assert sorted(got.spans) == sorted(whole.spans)
        assert [got.paragraphs(n)[0].strip() for n in sorted(got.spans)] == [
            whole.paragraphs(n)[0].strip() for n in sorted(whole.spans)
        ]
        assert got.provides == whole.provides
        assert got.essential == {"p5"}
    assert len(list((tmp_path / "cache" / "debian" / "index").iterdir())) == 1


def test_load_index_keeps_nothing_that_does_not_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    data = gzip.compress(_many(10))
    release = _release(tmp_path, "Packages.gz", data, size=len(data) - 1)
    with pytest.raises(MirrorError, match="does not match the hash"):
        load_index(f"file://{tmp_path}", release, "main", "amd64")
    assert list((tmp_path / "cache" / "debian" / "index").iterdir()) == []


def test_load_index_refuses_a_decompression_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    release = _release(tmp_path, "Packages.xz", lzma.compress(b"\n" * (64 << 20)))
    with pytest.raises(MirrorError, match="more than 20 times its size"):
        load_index(f"file://{tmp_path}", release, "main", "amd64")
    assert list((tmp_path / "cache" / "debian" / "index").iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "vmbuild-index"]  # stopped


def test_resolve_tells_of_each_package_as_it_is_chosen() -> None:
    raw = RawIndex()
    raw.add_text(INDEX + b"\nPackage: tool\nVersion: 1\nArchitecture: all\nDepends: awk\n")
    told: list[str] = []
    res = resolve(
        Universe(raw, "amd64"), [Request("tool")], on_chosen=lambda c: told.append(c.name)
    )
    assert told == list(res.chosen) == ["tool", "gawk"]  # (providers by name, as apt)
