"""The dpkg database and files of an image, read from its layers as streams: the
topmost status wins, a whiteout hides it, removed packages are left out."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.images import layer_tar
from vmbuild.oci.digest import of_file
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.sbom import dpkg
from vmbuild.sbom.inventory import deb_purl
from vmbuild.sbom.layerfiles import MAX_COPYRIGHT
from vmbuild.sbom.licenses import licensing

STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Version: 12.2.0-14

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def layer(path: Path, members: list[tuple[str, str, bytes | str]]) -> Layer:
    layer_tar(path, members)
    return Layer(of_file(path), BlobRef.whole(path), "none")


def test_topmost_status_and_dependencies(tmp_path: Path) -> None:
    low = layer(tmp_path / "a.tar", [("var/lib/dpkg/status", "f", "Package: old\nVersion: 0\n")])
    high = layer(tmp_path / "b.tar", [("var/lib/dpkg/status", "f", STATUS)])
    found = dpkg.packages(dpkg.scan_layers([low, high], "test"))
    assert [(c.name, c.version) for c in found] == [("libc6", "2.36-9"), ("libgcc-s1", "12.2.0-14")]
    assert found[0].purl == "pkg:deb/debian/libc6@2.36-9?arch=amd64"
    assert found[0].depends_on == {"deb:libgcc-s1:amd64"}


def test_whiteouts_hide_the_status(tmp_path: Path) -> None:
    low = layer(tmp_path / "a.tar", [("var/lib/dpkg/status", "f", STATUS)])
    gone = layer(tmp_path / "b.tar", [("var/lib/dpkg/.wh.status", "w", b"")])
    assert dpkg.packages(dpkg.scan_layers([low, gone], "test")) == []
    opaque = layer(tmp_path / "c.tar", [("var/lib", "o", b"")])
    assert dpkg.packages(dpkg.scan_layers([low, opaque], "test")) == []


def test_license_only_from_machine_readable_copyright() -> None:
    dep5 = (
        b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        b"Files: *\nCopyright: someone\nLicense: Apache-2.0\n"
    )
    assert dpkg.license_of(dep5) == "Apache-2.0"
    assert dpkg.license_of(b"This is free software, see /usr/share/common-licenses.\n") is None
    assert dpkg.license_of(dep5.replace(b"Apache-2.0", b"GPL-2+ with an odd exception")) is None


def test_purl_quotes_what_it_must() -> None:
    assert deb_purl("libstdc++6", "1:12.2-14", "amd64") == (
        "pkg:deb/debian/libstdc%2B%2B6@1:12.2-14?arch=amd64"
    )


_DEP5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"


def _seconds(data: bytes) -> tuple[str | None, float]:
    licensing()  # (loaded once, not timed)
    start = time.monotonic()
    got = dpkg.license_of(data)
    return got, time.monotonic() - start


def test_a_huge_copyright_file_is_not_parsed() -> None:
    """20 MB of 'GPL-2+ or ' took --sbom 2 minutes and 2 GB; over MAX_COPYRIGHT bytes,
    or over MAX_EXPRESSION characters of license, the answer is NOASSERTION at once."""
    huge = (_DEP5 + "Files: *\nLicense: " + "GPL-2+ or " * 2_000_000 + "MIT\n").encode()
    got, took = _seconds(huge)
    assert got is None and took < 0.5
    terms = (MAX_COPYRIGHT - 200) // len("GPL-2.0+ OR ")
    long = (_DEP5 + "Files: *\nLicense: " + "GPL-2.0+ OR " * terms + "MIT\n").encode()
    assert len(long) <= MAX_COPYRIGHT
    got, took = _seconds(long)
    assert got is None and took < 0.5
    fine = (_DEP5 + "Files: *\nLicense: " + "GPL-2.0+ OR " * 80 + "MIT\n").encode()
    assert (dpkg.license_of(fine) or "").startswith("GPL-2.0-or-later OR ")


def test_many_paragraphs_are_read_for_files_star_alone() -> None:
    """python-debian's parse of every paragraph grows with their square (5 s for a
    megabyte of them): only the header and the paragraphs of ``Files: *`` are parsed."""
    others = "".join(f"Files: src/f{i}.c\nCopyright: x\nLicense: MIT\n\n" for i in range(22_000))
    data = (_DEP5 + "Files: *\nCopyright: y\nLicense: Apache-2.0\n\n" + others).encode()
    assert len(data) <= MAX_COPYRIGHT
    got, took = _seconds(data)
    assert got == "Apache-2.0" and took < 1
    last = (
        _DEP5 + others + "Files:\n *\n debian/*\nCopyright: y\nLicense: BSD-3-Clause\n"
    ).encode()
    assert dpkg.license_of(last) == "BSD-3-Clause"


def test_a_copyright_member_over_the_bound_is_not_kept(tmp_path: Path) -> None:
    name = "usr/share/doc/p/copyright"
    big = layer(tmp_path / "a.tar", [(name, "f", b"x" * (MAX_COPYRIGHT + 1))])
    small = layer(tmp_path / "b.tar", [(name, "f", b"x" * 10)])
    assert name not in dpkg.scan_layers([big], "test")[0].kept
    assert name in dpkg.scan_layers([small], "test")[0].kept
