"""Reading the guest's fault note: OOM kills and a full scratch disk."""

from __future__ import annotations

from vmbuild.vm.faults import parse


def test_plain_failure_is_no_fault() -> None:
    note = b"status=1\noom_kills=0\noom_victim=\nscratch=250000 262144 4096\n"
    found = parse(note)
    assert found.oom is None and not found.disk_full


def test_oom_kill_names_the_victim() -> None:
    note = b"status=137\noom_kills=1\noom_victim=Killed process 52 (dd)\n"
    assert parse(note).oom == "the kernel's OOM killer stopped process 52 (dd)"


def test_no_free_blocks_is_a_full_disk() -> None:
    assert parse(b"status=1\noom_kills=0\nscratch=0 3840 4096\n").disk_full


def test_enospc_with_little_room_left_is_a_full_disk() -> None:
    note = b"status=1\noom_kills=0\nscratch=400 262144 4096\n"
    assert parse(note, b"tar: x: No space left on device\n").disk_full
    assert not parse(note, b"some other error\n").disk_full


def test_missing_or_garbled_note_is_no_fault() -> None:
    assert parse(b"") == parse(b"oom_kills=lots\nscratch=a b c\n")
    assert parse(b"").oom is None and not parse(b"").disk_full


def test_oom_kills_already_reported_do_not_count_again() -> None:
    note = b"status=1\noom_kills=2\noom_victim=Killed process 9 (cc)\n"
    assert parse(note, oom_seen=2).oom is None
    assert parse(note, oom_seen=1).oom is not None
    assert parse(note).oom_total == 2
