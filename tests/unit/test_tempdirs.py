"""Owner-locked temporary directories, and the sweep of those whose owner is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO
from vmbuild import tempdirs


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setenv("TMPDIR", str(d))
    yield d


def owner_process(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Another process that makes an owned directory and waits on its stdin."""
    script = (
        "import sys\nfrom vmbuild.tempdirs import OwnedDir\n"
        "d = OwnedDir('vmbuild-other-')\nprint(d.path, flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=dict(os.environ, TMPDIR=str(tmp)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().decode().strip())


def test_a_workdir_is_locked_while_used_and_removed_after(tmp: Path) -> None:
    with tempdirs.workdir("vmbuild-x-") as wd:
        assert wd.parent == tmp and wd.name.startswith("vmbuild-x-")
        assert list(wd.iterdir()) == []  # the lock file is beside it, not in it
        assert tempdirs.lock_path(wd).read_text() == f"{os.getpid()}\n"
        assert tempdirs.sweep_stale() == []  # this process holds it
        assert wd.exists()
    assert list(tmp.iterdir()) == []


def test_a_workdir_is_removed_on_an_exception(tmp: Path) -> None:
    with pytest.raises(KeyboardInterrupt), tempdirs.workdir() as wd:
        (wd / "f").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp.iterdir()) == []


def test_a_killed_owners_directory_is_swept_a_live_ones_is_kept(tmp: Path) -> None:
    proc, owned = owner_process(tmp)
    try:
        (owned / "scratch.img").write_bytes(b"\0" * 4096)
        assert tempdirs.sweep_stale() == []
        assert owned.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert tempdirs.sweep_stale() == [owned]
        assert not owned.exists()
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()


def test_the_next_workdir_sweeps_first(tmp: Path) -> None:
    proc, owned = owner_process(tmp)
    assert owned.exists()
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream:
            stream.close()
    with tempdirs.workdir() as wd:
        assert sorted(tmp.iterdir()) == sorted([wd, tempdirs.lock_path(wd)])


def test_directories_being_made_links_files_and_others_are_left(tmp: Path) -> None:
    making = tmp / "vmbuild-making"  # mkdtemp done, lock file not there yet
    making.mkdir()
    target = tmp / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    (tmp / "vmbuild-link").symlink_to(target)
    (tmp / "vmbuild-file").write_text("x")
    unrelated = tmp / "other-dir"
    unrelated.mkdir()
    assert tempdirs.sweep_stale() == []
    assert making.exists() and (target / "keep").exists() and unrelated.exists()


def test_a_lock_file_left_alone_is_removed_and_a_stale_pending_one_too(tmp: Path) -> None:
    alone = tmp / ".vmbuild-gone.lock"
    alone.write_text("1\n")
    half = tmp / "vmbuild-half"  # its maker died before naming its lock file
    half.mkdir()
    pending = tmp / ".vmbuild-half.new"
    pending.write_text("")
    fresh = tmp / "vmbuild-fresh"
    fresh.mkdir()
    (tmp / ".vmbuild-fresh.new").write_text("")  # being made right now
    os.utime(pending, (0, 0))
    assert tempdirs.sweep_stale() == [tmp / "vmbuild-gone", half]
    assert not alone.exists() and not half.exists() and not pending.exists()
    assert fresh.exists()


def test_an_older_vmbuilds_directory_goes_when_its_pid_is_gone(tmp: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True).stdout.decode().strip()  # fmt: skip
    old = tmp / "vmbuild-vm-old"
    old.mkdir()
    (old / "pid").write_text(f"{dead}\n")
    alive = tmp / "vmbuild-vm-alive"
    alive.mkdir()
    (alive / "pid").write_text(f"{os.getpid()}\n")
    assert tempdirs.sweep_stale() == [old]
    assert alive.exists()


def test_a_prefix_must_be_vmbuilds(tmp: Path) -> None:
    with pytest.raises(ValueError, match="must start with vmbuild-"):
        tempdirs.OwnedDir("tmp-")
