"""What the guest's console tells the host: the root step's current stage, and a
corrupt file system (the kernel's EXT4-fs error), kept for the error that follows."""

from __future__ import annotations

from tests.support.guestconsole import console_of


def test_the_last_stage_announced_is_the_current_one() -> None:
    assert console_of(b"vmbuild-guest-ready").stage is None
    console = console_of(
        b"vmbuild-guest-stage: setup", b"some output", b"vmbuild-guest-stage: configure"
    )
    assert console.stage == "configure"
    assert console.tail() == ["some output"]  # our marks are not the guest's words


def test_a_stage_name_is_only_a_word() -> None:
    console = console_of(b"vmbuild-guest-stage: runAsRoot", b"vmbuild-guest-stage: ../x y")
    assert console.stage == "runAsRoot"


def test_an_ext4_error_is_corruption() -> None:
    line = (
        b"[   12.5] EXT4-fs error (device vda): ext4_validate_block_bitmap:390: comm dpkg: "
        b"bg 0: bad block bitmap checksum"
    )
    console = console_of(b"booting", line, b"after")
    found = console.corruption()
    assert found is not None
    assert found.startswith("EXT4-fs error (device vda): ext4_validate_block_bitmap:390")
    assert console_of(b"EXT4-fs (vda): mounted filesystem").corruption() is None
