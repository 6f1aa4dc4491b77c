"""The index scan: each paragraph under its first Package field, with its first
Provides and its Essential flag, the same on the quick path (every paragraph starts
with its Package field, as an archive's indexes do) and the general one."""

from __future__ import annotations

from vmbuild.debian.index import RawIndex

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
