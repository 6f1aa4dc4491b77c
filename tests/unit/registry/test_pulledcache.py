"""Pulled archives kept by hash (registry.pulledcache): linked when their record holds,
rehashed when it does not, dropped when the bytes changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vmbuild.registry import pulledcache


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def _output(tmp_path: Path, data: bytes) -> tuple[Path, bytes]:
    out = tmp_path / "pulled.tar"
    out.write_bytes(data)
    return out, hashlib.sha256(data).digest()


def test_a_kept_archive_is_linked_to_the_next_output(tmp_path: Path) -> None:
    out, sha = _output(tmp_path, b"archive bytes" * 1000)
    pulledcache.remember(out, sha)
    again = tmp_path / "again.tar"
    assert pulledcache.place(sha, again)
    assert again.read_bytes() == out.read_bytes()
    assert again.stat().st_ino == pulledcache.path_for(sha).stat().st_ino  # no copy
    assert not pulledcache.place(b"\0" * 32, tmp_path / "other.tar")


def test_an_output_written_in_place_is_never_served(tmp_path: Path) -> None:
    out, sha = _output(tmp_path, b"good bytes" * 1000)
    pulledcache.remember(out, sha)
    with open(out, "r+b") as f:  # the user edits the output, which shares the inode
        f.write(b"EVIL")
    assert pulledcache.trusted(sha) is None
    assert not pulledcache.path_for(sha).exists()
    assert not pulledcache.place(sha, tmp_path / "again.tar")


def test_a_lost_record_costs_one_rehash(tmp_path: Path) -> None:
    out, sha = _output(tmp_path, b"fine" * 1000)
    pulledcache.remember(out, sha)
    record = pulledcache.path_for(sha).with_name(f".{sha.hex()}.tar.verified")
    record.unlink()
    assert pulledcache.trusted(sha) == pulledcache.path_for(sha)
    assert record.exists()
