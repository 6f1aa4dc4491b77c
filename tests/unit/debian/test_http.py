"""Downloads of a package: each writer in a part file of its own (never a shared or
linked one), bounded by the signed size, stopped at once by its Stop, and confined to
a file:// mirror."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from tests.support.slowmirror import Behaviour, serve
from vmbuild.debian.http import MirrorError, download, get
from vmbuild.signals import Stop, Stopped

DATA = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "pool/main/p_1.0_all.deb"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    (root / "pool" / "main").mkdir(parents=True)
    (root / NAME).write_bytes(DATA)
    return root


def _dest(tmp_path: Path) -> Path:
    debs = tmp_path / "cache" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    return debs / f"{SHA}.deb"


def _left(dest: Path) -> list[str]:
    return sorted(n for n in os.listdir(dest.parent) if n != dest.name)


def test_parallel_writers_of_one_file_each_write_their_own_part(
    tmp_path: Path, mirror: Path
) -> None:
    """N1: the second writer truncated, resumed from or renamed the first's shared
    ``.part``; now both finish, the file is whole, and no part is left."""
    dest = _dest(tmp_path)
    b = Behaviour("gate")
    errors: list[BaseException] = []
    with serve(mirror, b) as url:

        def first() -> None:
            try:
                download(url, NAME, dest, len(DATA), SHA)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=first)
        t.start()
        assert b.started.wait(10)
        time.sleep(0.2)  # the first writer holds half the file in its part
        b.mode = "whole"
        download(url, NAME, dest, len(DATA), SHA)  # a second process, meanwhile
        assert dest.read_bytes() == DATA
        b.go.set()
        t.join(10)
    assert errors == []
    assert dest.read_bytes() == DATA
    assert _left(dest) == []


def test_a_link_in_the_cache_is_never_written_through(tmp_path: Path, mirror: Path) -> None:
    """N5: a symlinked ``<sha>.deb.part`` had its target overwritten; links at the
    old part name, or in the final file's place, are left or replaced, never followed."""
    dest = _dest(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("VICTIM\n")
    (dest.parent / f"{dest.name}.part").symlink_to(victim)
    dest.symlink_to(victim)
    with serve(mirror, Behaviour()) as url:
        download(url, NAME, dest, len(DATA), SHA)
    assert victim.read_text() == "VICTIM\n"
    assert not dest.is_symlink() and dest.read_bytes() == DATA


def test_a_dead_writers_part_is_swept_and_a_live_ones_kept(tmp_path: Path, mirror: Path) -> None:
    dest = _dest(tmp_path)
    dead = dest.parent / f".{dest.name}.999.1.abc.part"
    dead.write_bytes(b"half")
    other = dest.parent / f".{'0' * 64}.deb.999.1.abc.part"  # (another package's)
    other.write_bytes(b"half")
    live = dest.parent / f".{dest.name}.998.1.def.part"
    live.write_bytes(b"half")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with serve(mirror, Behaviour()) as url:
            download(url, NAME, dest, len(DATA), SHA)
        assert _left(dest) == [live.name]
    finally:
        os.close(fd)


def test_an_endless_body_stops_one_byte_past_the_size(tmp_path: Path, mirror: Path) -> None:
    """N3: an endless body grew the part to gigabytes before the hash was checked."""
    dest = _dest(tmp_path)
    b = Behaviour("endless")
    with serve(mirror, b) as url, pytest.raises(MirrorError, match="larger than the 10240 bytes"):
        download(url, NAME, dest, len(DATA), SHA)
    assert _left(dest) == [] and not dest.exists()
    assert b.sent < 16 << 20  # the server was cut off (its socket buffers aside)


def test_a_short_body_is_an_error(tmp_path: Path, mirror: Path) -> None:
    dest = _dest(tmp_path)
    with serve(mirror, Behaviour("short")) as url, pytest.raises(MirrorError):
        download(url, NAME, dest, len(DATA), SHA)
    assert _left(dest) == [] and not dest.exists()


def test_a_size_smaller_than_the_file_is_an_error_at_once(tmp_path: Path, mirror: Path) -> None:
    dest = _dest(tmp_path)
    with serve(mirror, Behaviour()) as url, pytest.raises(MirrorError, match="larger than"):
        download(url, NAME, dest, 100, SHA)
    assert _left(dest) == []


@pytest.mark.parametrize("mode", ["drip", "stall"])
def test_a_stop_wakes_a_download_blocked_on_a_slow_mirror(
    tmp_path: Path, mirror: Path, mode: str
) -> None:
    """N3: Fetcher.close waited for a dripping download to end (or for a mirror that
    never answers to time out)."""
    dest = _dest(tmp_path)
    b = Behaviour(mode, rate=2)
    stop = Stop()
    got: list[BaseException] = []
    with serve(mirror, b) as url:

        def run() -> None:
            try:
                download(url, NAME, dest, len(DATA), SHA, stop)
            except BaseException as exc:
                got.append(exc)

        t = threading.Thread(target=run)
        t.start()
        assert b.started.wait(10)
        time.sleep(0.3)
        began = time.monotonic()
        stop.stop()
        t.join(5)
        assert time.monotonic() - began < 1
    assert len(got) == 1 and isinstance(got[0], Stopped), got
    assert _left(dest) == [] and not dest.exists()


def test_a_file_mirror_is_never_read_outside(tmp_path: Path, mirror: Path) -> None:
    """N14: a file:// mirror copied what a Filename with .. (or a link) pointed at."""
    dest = _dest(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(DATA)
    (mirror / "pool" / "main" / "link.deb").symlink_to(secret)
    url = f"file://{mirror}"
    for name in ("pool/main/link.deb", "pool/../../secret", "/etc/passwd"):
        with pytest.raises(MirrorError):
            download(url, name, dest, len(DATA), SHA)
        assert not dest.exists() and _left(dest) == []
    download(url, NAME, dest, len(DATA), SHA)
    assert dest.read_bytes() == DATA


def test_a_small_body_is_read_whole_only_up_to_its_bound(tmp_path: Path, mirror: Path) -> None:
    """An endless InRelease was read into memory up to MAX_INDEX (512 MiB)."""
    b = Behaviour("endless")
    with serve(mirror, b) as url, pytest.raises(MirrorError, match="larger than 1000 bytes"):
        get(f"{url}/{NAME}", 1000)
    assert b.sent < 16 << 20
    with serve(mirror, Behaviour()) as url:
        assert get(f"{url}/{NAME}", len(DATA)) == DATA
