"""The one-pass scan of a Packages index and the providers found from it."""

from __future__ import annotations

from vmbuild.debian.index import RawIndex
from vmbuild.debian.resolve import Universe

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
