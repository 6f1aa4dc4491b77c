"""Reading the guest's fault note (OOM kills, a full scratch disk) and QEMU's host I/O errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.guestconsole import console_of
from vmbuild.vm import Machine
from vmbuild.vm.faults import (
    GuestDiskCorrupt,
    GuestDiskFull,
    HostDiskError,
    HostWatch,
    VmTimeout,
    host_disk_error,
    parse,
)


def test_plain_failure_is_no_fault() -> None:
    note = b"status=1\noom_kills=0\noom_victim=\nscratch=250000 262144 4096\n"
    found = parse(note)
    assert found.oom is None and not found.disk_full


def test_oom_kill_names_the_victim() -> None:
    note = b"status=137\noom_kills=1\noom_victim=Killed process 52 (dd)\n"
    assert parse(note).oom == "the kernel's OOM killer stopped process 52 (dd)"


def test_no_free_blocks_is_a_full_disk() -> None:
    assert parse(b"status=1\noom_kills=0\nscratch=0 3840 4096\n").disk_full


def test_less_than_a_two_hundredth_left_is_a_full_disk() -> None:
    assert parse(b"status=1\noom_kills=0\nscratch=400 262144 4096\n").disk_full
    assert not parse(b"status=1\noom_kills=0\nscratch=1400 262144 4096\n").disk_full


def test_missing_or_garbled_note_is_no_fault() -> None:
    assert parse(b"") == parse(b"oom_kills=lots\nscratch=a b c\n")
    assert parse(b"").oom is None and not parse(b"").disk_full


def test_oom_kills_already_reported_do_not_count_again() -> None:
    note = b"status=1\noom_kills=2\noom_victim=Killed process 9 (cc)\n"
    assert parse(note, oom_seen=2).oom is None
    assert parse(note, oom_seen=1).oom is not None
    assert parse(note).oom_total == 2


# --- host I/O errors QEMU reports (BLOCK_IO_ERROR) ---------------------------------------


def enospc(node: str = "d0") -> dict[str, object]:
    return {"device": "", "node-name": node, "operation": "write", "action": "report",
            "reason": "No space left on device"}  # fmt: skip


def test_a_full_tmpdir_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    images = [tmp_path / "vmbuild-vm-x" / "scratch.img", tmp_path / "vmbuild-y" / "out.img"]
    err = host_disk_error(enospc("d1"), images)
    assert isinstance(err, HostDiskError)
    assert err.message == (
        f"the host's disk is full: no space left in {tmp_path} (TMPDIR) "
        "for the build VM's disk image out.img"
    )
    assert err.hint and "TMPDIR" in err.hint


def test_a_full_cache_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    err = host_disk_error(enospc(), [tmp_path / "cache" / "kind" / "x.img"])
    assert f"no space left in {tmp_path / 'cache'} (the cache)" in err.message


def test_other_host_errors_name_the_operation_and_reason(tmp_path: Path) -> None:
    event = {"node-name": "d0", "operation": "read", "reason": "Input/output error"}
    err = host_disk_error(event, [tmp_path / "lowers.img"])
    assert err.message == (
        f"the host could not read the build VM's disk image lowers.img in {tmp_path}: "
        "Input/output error"
    )
    assert "disk image" in host_disk_error({"node-name": "zz"}, []).message


class FakeMonitor:
    def __init__(self, batches: list[list[dict[str, object]]]) -> None:
        self.batches = batches
        self.asked = 0

    def io_errors(self) -> list[dict[str, object]]:
        self.asked += 1
        return self.batches.pop(0) if self.batches else []


def test_the_watch_asks_at_most_every_so_often_and_keeps_the_first_error(tmp_path: Path) -> None:
    watch = HostWatch([tmp_path / "scratch.img"], every=60)
    monitor = FakeMonitor([[], [enospc()], [enospc("d9")]])
    assert watch.look(monitor) is None  # type: ignore[arg-type]
    assert watch.look(monitor) is None and monitor.asked == 1  # type: ignore[arg-type]
    first = watch.look(monitor, now=True)  # type: ignore[arg-type]
    assert first is not None and "scratch.img" in first.message
    assert watch.look(monitor, now=True) is first and monitor.asked == 2  # type: ignore[arg-type]


# --- a corrupt file system in the guest, and the stage a timeout stopped ----------------


class _Channel:
    def __init__(self, note: bytes) -> None:
        self.note = note

    def capture(self, command: str, **kw: object) -> tuple[int, bytes]:
        return 0, self.note


def test_a_corrupt_scratch_disk_is_not_reported_as_full() -> None:
    """A postinst wrote zeros over a VM disk; ext4 then said "Structure needs cleaning"
    and vmbuild said "the build VM's disk is full -- raise diskSize"."""

    vm = Machine()
    vm._channel = _Channel(b"status=2\noom_kills=0\nscratch=0 262144 4096\n")  # type: ignore[assignment]
    vm._console = console_of(
        b"EXT4-fs error (device vda): ext4_lookup:1855: inode #2: comm dpkg: iget: bad inode"
    )
    with pytest.raises(GuestDiskCorrupt) as caught:
        vm._check_faults()
    assert not isinstance(caught.value, GuestDiskFull)
    message = caught.value.message
    assert "corrupt" in message and "/dev/vda" in message and "EXT4-fs error" in message
    assert caught.value.hint and "diskSize" not in caught.value.hint
    vm._console = console_of(b"nothing wrong")
    with pytest.raises(GuestDiskFull):
        vm._check_faults()


def test_a_timeout_carries_the_stage_the_guest_said_it_was_in() -> None:

    vm = Machine()
    vm._channel = _Channel(b"")  # type: ignore[assignment]
    vm._console = console_of(b"vmbuild-guest-stage: setup", b"vmbuild-guest-stage: configure")
    with pytest.raises(VmTimeout) as caught:
        vm._raise_timeout("the command did not finish", 90)
    assert caught.value.stage == "configure" and caught.value.phase == "command"
