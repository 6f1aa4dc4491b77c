"""Part files: one per writer, made without following a link, locked while written;
a dead writer's swept, a live one's kept; publishing keeps a file another writer put
in place first and replaces (never follows) anything else."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from vmbuild import parts


def test_each_writer_gets_its_own_locked_part(tmp_path: Path) -> None:
    final = tmp_path / "f.deb"
    (tmp_path / ".f.deb.part").symlink_to(tmp_path / "victim")  # (an old shared name)
    one, two = parts.create(final), parts.create(final)
    try:
        assert one[1] != two[1]
        for fd, path in (one, two):
            assert path.name.startswith(f".f.deb.{os.getpid()}.") and path.name.endswith(".part")
            assert stat.S_ISREG(os.lstat(path).st_mode) and os.path.samestat(
                os.fstat(fd), os.lstat(path)
            )
            probe = os.open(path, os.O_RDONLY)
            try:  # (held: another open file cannot take the lock)
                assert _locked(probe)
            finally:
                os.close(probe)
        parts.sweep(final)
        assert one[1].exists() and two[1].exists()  # live writers' parts stay
    finally:
        os.close(one[0])
        os.close(two[0])
    parts.sweep(final)
    assert sorted(os.listdir(tmp_path)) == [".f.deb.part"]  # (a link: not a part of ours)
    assert not (tmp_path / "victim").exists()


def _locked(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def test_publish_keeps_a_file_put_in_place_first_and_replaces_anything_else(
    tmp_path: Path,
) -> None:
    final = tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_text("victim")
    for there in ("file", "link", "directory", "nothing"):
        if there == "file":
            final.write_text("first")
        elif there == "link":
            final.symlink_to(victim)
        elif there == "directory":
            (final / "sub").mkdir(parents=True)
        fd, part = parts.create(final)
        os.write(fd, b"mine")
        os.close(fd)
        parts.publish(part, final)
        assert not final.is_symlink() and final.read_text() == (
            "first" if there == "file" else "mine"
        )
        assert not part.exists() and victim.read_text() == "victim"
        final.unlink()
