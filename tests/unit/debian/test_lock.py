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
        ('"pool/main/a/a.deb"', '"../../etc/passwd"', "unsafe Filename"),
        ('"pool/main/a/a.deb"', '"/etc/passwd"', "unsafe Filename"),
        ('"pool/main/a/a.deb"', '"pool/./a.deb"', "unsafe Filename"),
        ('"pool/main/a/a.deb"', '"pool//a.deb"', "unsafe Filename"),
        ('"pool/main/a/a.deb"', '"pool/a b.deb"', "unsafe Filename"),
        ('"pool/main/a/a.deb"', '"pool/a.deb\\n"', "unsafe Filename"),
        ('"size": 5', '"size": 1e999', "Size inf"),  # s3-sizeinf: was OverflowError
        ('"size": 5', '"size": -5', "Size -5"),  # s3-sizeneg: was FileNotFoundError
        ('"size": 5', '"size": 5.5', "Size 5.5"),
        ('"size": 5', '"size": "5"', "Size '5'"),
        ('"size": 5', '"size": true', "Size True"),
        ('"version": "1.0"', '"version": "1.0\\nStatus: x"', "bad version"),
        ('"architecture": "all"', '"architecture": "a/b"', "bad architecture"),
        ('"essential": false', '"essential": "no"', "expected true or false"),
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
