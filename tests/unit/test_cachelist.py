"""Listing and pruning the local cache (vmbuild.cachelist), on a real directory."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from vmbuild import cache, cachelist
from vmbuild.errors import VmbuildError

NOW = time.time()


def _make(root: Path, rel: str, size: int, age_days: float) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = NOW - age_days * cachelist.DAY
    os.utime(path, (t, t))
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path))
    _make(tmp_path, "kernel/k1/vmlinux", 8192, 40)
    _make(tmp_path, "kernel/k2/vmlinux", 8192, 1)
    _make(tmp_path, "blobs/sha256/aa", 4096 * 3, 10)
    _make(tmp_path, "blobs/unpacked/bb", 100, 10)
    _make(tmp_path, "steps/s1/layer.tar", 4096, 2)
    _make(tmp_path, "debs/d1.deb", 4096, 10)
    _make(tmp_path, "debs/unpacked/d1-4", 4096, 10)
    _make(tmp_path, "debs/d2.deb.part", 4096, 100)  # being downloaded: never an entry
    _make(tmp_path, "kernel/.k3.lock", 0, 100)  # a lock: never an entry
    _make(tmp_path, "kernel/.abc-tmp/x", 10, 100)  # half-written: never an entry
    return tmp_path


def test_entries_are_listed_by_kind_with_sizes(root: Path) -> None:
    found = cachelist.entries()
    names = sorted(str(e.path.relative_to(root)) for e in found)
    assert names == [
        "blobs/sha256/aa",
        "blobs/unpacked/bb",
        "debs/d1.deb",
        "debs/unpacked/d1-4",  # each package's entry (never debs/unpacked whole)
        "kernel/k1",
        "kernel/k2",
        "steps/s1",
    ]
    kinds = {s.kind: s for s in cachelist.summary(found, NOW)}
    assert kinds["kernel"].count == 2 and kinds["kernel"].size >= 16384
    assert kinds["blobs"].count == 2
    assert 39 < kinds["kernel"].oldest / cachelist.DAY < 41


def test_prune_older_than_removes_only_old_entries(root: Path) -> None:
    removed, busy = cachelist.prune(older_than=5, max_size=None)
    assert sorted(e.path.name for e in removed) == ["aa", "bb", "d1-4", "d1.deb", "k1"]
    assert busy == []
    assert (root / "debs/unpacked").is_dir() and (root / "debs/d2.deb.part").exists()
    assert not (root / "kernel/k1").exists() and (root / "kernel/k2/vmlinux").exists()
    assert (root / "steps/s1/layer.tar").exists()
    assert not any(p.name.startswith(".pruning") for p in root.rglob("*"))


def test_prune_max_size_removes_least_recently_used_first(root: Path) -> None:
    sizes = {e.path.name: e.size for e in cachelist.entries()}
    keep = sizes["k2"] + sizes["s1"]  # the two youngest fit; k1 (oldest) and the rest go
    removed, _ = cachelist.prune(older_than=None, max_size=keep)
    assert sorted(e.path.name for e in removed) == ["aa", "bb", "d1-4", "d1.deb", "k1"]
    assert sum(e.size for e in cachelist.entries()) <= keep


def test_an_entry_whose_lock_is_held_is_kept(root: Path) -> None:
    lock = root / "kernel" / ".k1.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed, busy = cachelist.prune(older_than=5, max_size=None)
    finally:
        os.close(fd)
    assert [e.path.name for e in busy] == ["k1"]
    assert (root / "kernel/k1/vmlinux").exists()
    assert "k1" not in [e.path.name for e in removed]


def test_an_entry_a_build_holds_is_kept_until_the_build_ends(root: Path) -> None:
    entry = root / "debs/unpacked/d1-4"
    with cache.holding():
        cache.hold(entry)
        cache.hold(root / "debs/unpacked/d3-4")  # not there yet: made later, kept too
        _make(root, "debs/unpacked/d3-4", 10, 10)
        removed, busy = cachelist.prune(older_than=5, max_size=None)
        assert sorted(e.path.name for e in busy) == ["d1-4", "d3-4"]
        assert entry.is_file() and (root / "debs/unpacked/d3-4").is_file()
    removed, busy = cachelist.prune(older_than=5, max_size=None)
    assert sorted(e.path.name for e in removed) == ["d1-4", "d3-4"] and busy == []
    assert not any(p.name.startswith(".") for p in (root / "debs/unpacked").iterdir())


def test_a_reader_that_waited_for_a_prune_holds_what_it_makes_again(root: Path) -> None:
    """The prune unlinks the lock file it held: a reader that opened that file meanwhile
    (and waited) takes the new one, so the entry it makes again is held."""
    entry = root / "debs/d1.deb"
    (found,) = [e for e in cachelist.entries() if e.path == entry]
    holds = cache.Holds()
    reader = threading.Thread(target=holds.hold, args=(entry,))
    with cachelist._unlocked(found) as free:  # a prune, between its lock and its removal
        assert free
        reader.start()
        time.sleep(0.2)
        assert reader.is_alive()  # waits for the prune
        assert cache.discard(entry)
        cache.lock_file(entry).unlink()
    reader.join()
    assert not entry.exists()
    _make(root, "debs/d1.deb", 10, 10)  # the reader makes it again
    try:
        assert [e.path for e in cachelist.prune(older_than=5, max_size=None)[1]] == [entry]
    finally:
        holds.release()
    assert [e.path for e in cachelist.prune(older_than=5, max_size=None)[0]] == [entry]


@pytest.mark.parametrize(
    ("text", "size"), [("2048", 2048), ("500M", 500 << 20), ("1.5GiB", 3 << 29), ("10g", 10 << 30)]
)
def test_parse_size(text: str, size: int) -> None:
    assert cachelist.parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(VmbuildError, match="not a size"):
        cachelist.parse_size("lots")
