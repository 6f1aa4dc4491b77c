"""Debian packages in specs: the { deb = ... } item and the [debian] table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vmbuild.config import build_image, layered
from vmbuild.config.common import Fields
from vmbuild.debian.lock import Request
from vmbuild.debian.source import DebianTable
from vmbuild.errors import SpecError


def _layered(table: dict[str, Any]) -> layered.LayeredSpec:
    return layered.parse(Fields({"name": "d", **table}, "/s/d.toml", Path("/s")))


def test_items_and_defaults() -> None:
    s = _layered({"contents": [{"deb": "bash"}, {"deb": "libc6", "version": "2.36-9+deb12u10"}]})
    assert s.contents == (Request("bash"), Request("libc6", "2.36-9+deb12u10"))
    assert s.tables["deb"] == DebianTable(lock=Path("/s/d.toml.lock"))
    b = build_image.parse(
        Fields({"name": "d", "copyToRoot": {"deb": "bash"}}, "/s/d.toml", Path("/s"))
    )
    assert b.copy_to_root == (Request("bash"),)


def test_the_table() -> None:
    s = _layered(
        {
            "debian": {
                "suite": "trixie",
                "mirror": "http://127.0.0.1:1/debian",
                "components": ["main", "contrib"],
                "keyring": "k.gpg",
                "recommends": True,
                "essential": True,
                "lock": "x.lock",
            }
        }
    )
    assert s.tables["deb"] == DebianTable(
        Path("/s/x.lock"),
        "trixie",
        "http://127.0.0.1:1/debian",
        ("main", "contrib"),
        Path("/s/k.gpg"),
        True,
        True,
        False,
    )
    assert s.tables["deb"].check_valid_until  # apt's default
    snapshot = _layered({"debian": {"checkValidUntil": False}}).tables["deb"]
    assert snapshot is not None and not snapshot.check_valid_until


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"contents": [{"deb": "Bad Name"}]}, "not a Debian package name"),
        ({"contents": [{"deb": "bash", "versoin": "1"}]}, "unknown key 'versoin'"),
        ({"contents": [{"deb": "bash", "version": "1 2"}]}, "not a Debian version"),
        ({"debian": {"suit": "x"}}, "unknown argument 'suit'"),
        ({"debian": {"mirror": "ftp://x"}}, "not an http"),
        ({"debian": {"checkValidUntil": "no"}}, "checkValidUntil"),
        ({"debian": {"configure": True}, "architecture": "arm64"}, "runs amd64 only"),
        ({"debian": {"configure": True}}, "buildImage's; buildLayeredImage has no build VM"),
    ],
)
def test_bad_input(table: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        _layered(table)
