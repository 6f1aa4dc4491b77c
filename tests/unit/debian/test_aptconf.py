"""The host's apt sources: deb822 and one-line files, Signed-By, the default suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild.debian.aptconf import DEBIAN_KEYRING, default_source, host_sources, keyring_of
from vmbuild.errors import SpecError


def test_both_formats_are_read(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\ndeb-src http://mirror.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian/ bookworm main contrib\n"
    )
    (tmp_path / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://other.invalid/debian\nSuites: trixie trixie-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/x.gpg\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.invalid/\nSuites: sid\nComponents: main\n"
    )
    found = host_sources(tmp_path)
    assert [(s.uri, s.suites, s.components, s.signed_by) for s in found] == [
        ("http://mirror.invalid/debian", ("bookworm",), ("main", "contrib"), "/k.gpg"),
        (
            "http://other.invalid/debian",
            ("trixie", "trixie-updates"),
            ("main",),
            "/usr/share/keyrings/x.gpg",
        ),
    ]
    assert default_source(None, tmp_path).suites == ("bookworm",)
    assert default_source("trixie-updates", tmp_path).uri == "http://other.invalid/debian"
    with pytest.raises(SpecError, match="serves suite 'sid'"):
        default_source("sid", tmp_path)


def test_keyring_defaults_to_debians() -> None:
    assert keyring_of("") == DEBIAN_KEYRING
    assert keyring_of("/etc/k.gpg") == Path("/etc/k.gpg")
