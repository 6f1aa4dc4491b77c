"""Writing the lock file goes where an output goes (vmbuild.oci.output): a symlink is
followed and its target written, and anything but a regular file is refused, untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vmbuild.debian.lock import For, Lock, Locked, Request, read_lock, to_json, write_lock
from vmbuild.errors import SpecError


def _lock() -> Lock:
    made_for = For("bookworm", "amd64", (Request("a"),))
    return Lock(made_for, "", (Locked("a", "1", "all", "pool/a.deb", 5, "a" * 64),))


def _nothing_left(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_a_symlinked_lock_writes_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real.lock").write_text("old")
    link = tmp_path / "spec.toml.lock"
    link.symlink_to("real.lock")
    write_lock(link, _lock())
    assert link.is_symlink() and os.readlink(link) == "real.lock"
    assert (tmp_path / "real.lock").read_text() == to_json(_lock())
    assert read_lock(link) == read_lock(tmp_path / "real.lock")
    _nothing_left(tmp_path)


def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "spec.toml.lock"
    link.symlink_to("made.lock")
    write_lock(link, _lock())
    assert link.is_symlink()
    assert (tmp_path / "made.lock").read_text() == to_json(_lock())


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_is_refused_and_kept(tmp_path: Path) -> None:
    dev = tmp_path / "devlock"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for path in (dev, tmp_path / "link-to-dev"):
        if path != dev:
            path.symlink_to(dev)
        with pytest.raises(SpecError, match=f"lock file {path} is a special file"):
            write_lock(path, _lock())
    assert stat.S_ISCHR(dev.lstat().st_mode)
    _nothing_left(tmp_path)


def test_a_fifo_and_a_directory_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.lock"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="special file"):
        write_lock(fifo, _lock())
    (tmp_path / "dir.lock").mkdir()
    with pytest.raises(SpecError, match=r"lock file .*dir\.lock is a directory"):
        write_lock(tmp_path / "dir.lock", _lock())
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and (tmp_path / "dir.lock").is_dir()
    _nothing_left(tmp_path)
