"""The lock file: written deterministically, read back, checked, stale when it does not cover."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild.debian.lock import For, Lock, Locked, Request, read_lock, to_json, write_lock
from vmbuild.errors import SpecError

SHA = "a" * 64


def _lock() -> Lock:
    made_for = For("bookworm", "amd64", (Request("b"), Request("a", "1.0")))
    pkgs = (
        Locked("b", "2", "amd64", "pool/main/b/b.deb", 10, SHA, ("a",)),
        Locked("a", "1.0", "all", "pool/main/a/a.deb", 5, SHA),
    )
    return Lock(made_for, "Sat, 10 May 2025 00:00:00 UTC", pkgs)


def test_round_trip_and_coverage(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml.lock"
    write_lock(path, _lock())
    back = read_lock(path)
    assert to_json(back) == path.read_text() == to_json(_lock())
    assert back.covers(For("bookworm", "amd64", (Request("a", "1.0"),)))
    assert not back.covers(For("bookworm", "amd64", (Request("c"),)))
    assert not back.covers(For("bookworm", "arm64", (Request("b"),)))
    assert not back.covers(For("trixie", "amd64", (Request("b"),)))


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ('"lockVersion": 1', '"lockVersion": 7', "lockVersion"),
        (f'"{SHA}"', '"abc"', "bad sha256"),
        ('"pool/main/a/a.deb"', '"../../etc/passwd"', "bad filename"),
        ('"a"\n   ]', '"zz"\n   ]', "does not list"),
    ],
)
def test_a_malformed_lock_is_one_error(tmp_path: Path, old: str, new: str, why: str) -> None:
    path = tmp_path / "spec.toml.lock"
    text = to_json(_lock())
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError, match=why):
        read_lock(path)
