"""The guest's initramfs as assembled from this host's files (no guest booted)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from vmbuild.units.elf import read_elf
from vmbuild.units.helpers import default_closure as closure
from vmbuild.vm import cpio, initramfs
from vmbuild.vm.keys import Keys
from vmbuild.vm.stepfiles import step_tar


@pytest.fixture(scope="module")
def members() -> dict[str, cpio.Entry]:
    keys = Keys(b"hostkey", "ssh-ed25519 AAAAhost", None, "ssh-ed25519 AAAAclient")
    return {e.path: e for e in initramfs.entries(keys)}


def test_sorted_with_every_parent_directory_first(members: dict[str, cpio.Entry]) -> None:
    paths = list(members)
    assert paths == sorted(paths)
    for path in paths:
        parent = path.rpartition("/")[0]
        assert not parent or stat.S_ISDIR(members[parent].mode) or parent in initramfs.MERGED_USR


def test_sh_is_dash_and_tar_is_gnu_not_busybox(members: dict[str, cpio.Entry]) -> None:
    assert members["usr/bin/sh"].data == b"dash"
    assert stat.S_ISREG(members["usr/bin/tar"].mode)
    assert members["usr/bin/ls"].data == b"/usr/bin/busybox"  # an applet nobody else has
    assert members["bin"].data == b"usr/bin"


def test_tools_libraries_keys_and_init_are_there(members: dict[str, cpio.Entry]) -> None:
    for path in (
        "init",
        "usr/bin/bash",  # runAsRoot and extraCommands are bash scripts
        "usr/lib/x86_64-linux-gnu/libtinfo.so.6",
        "usr/sbin/dropbear",
        "usr/sbin/useradd",
        "usr/sbin/chpasswd",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib64/ld-linux-x86-64.so.2",
        "usr/lib/x86_64-linux-gnu/security/pam_unix.so",
        "usr/lib/vmbuild/exec.sh",
        "dev/console",
    ):
        assert path in members, path
    assert members["root/.ssh/authorized_keys"].data == b"ssh-ed25519 AAAAclient\n"
    assert members["etc/dropbear/host_key"].data == b"hostkey"
    assert members["init"].data.startswith(b"#!/usr/bin/busybox sh\n")


def test_the_digest_is_stable(members: dict[str, cpio.Entry]) -> None:
    entries = list(members.values())
    assert initramfs.digest_of(entries) == initramfs.digest_of(list(entries))


def test_closure_follows_interpreter_libraries_and_links() -> None:
    info = read_elf("/usr/bin/tar")
    assert info is not None
    assert info.interp == "/lib64/ld-linux-x86-64.so.2" and "libc.so.6" in info.needed
    found = {str(p) for p in closure([Path("/usr/bin/tar")])}
    assert "/usr/lib64/ld-linux-x86-64.so.2" in found  # a symlink, kept as one
    assert "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" in found
    assert any(p.startswith("/usr/lib/x86_64-linux-gnu/libacl.so.1") for p in found)
    assert "/lib64" in found  # the links the loader resolves through
    assert read_elf("/etc/passwd") is None


def test_the_step_offers_bash_through_the_guests_loader() -> None:
    """In the image's chroot, bash starts without the image's libc (or any shell)."""
    with tarfile.open(fileobj=io.BytesIO(step_tar({"runAsRoot": b"true"}))) as tar:
        wrapper = tar.extractfile("bin/bash")
        assert wrapper is not None
        text = wrapper.read().decode()
        assert tar.extractfile("runAsRoot").read() == b"true"  # type: ignore[union-attr]
    assert text.startswith("#!/.vmbuild/usr/bin/busybox sh\n")
    assert "exec /.vmbuild/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path" in text
    assert text.rstrip().endswith('/.vmbuild/usr/bin/bash "$@"')
