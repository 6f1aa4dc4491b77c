"""The cache's small JSON files: one reader and one atomic writer for every kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmbuild import cache
from vmbuild.cache import read_json, write_json


def test_written_json_reads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "kind" / "entry"
    write_json(path, {"diff_id": "sha256:x", "size": 3})
    write_json(path, {"diff_id": "sha256:y", "size": 4})
    assert read_json(path) == {"diff_id": "sha256:y", "size": 4}
    assert os.listdir(path.parent) == ["entry"]


def test_a_missing_or_broken_file_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "missing") is None
    (tmp_path / "broken").write_text("{not json")
    assert read_json(tmp_path / "broken") is None


def test_a_value_json_cannot_hold_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "entry"
    write_json(path, [1])
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert read_json(path) == [1] and os.listdir(tmp_path) == ["entry"]


def test_an_unwritable_directory_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    write_json(tmp_path / "file" / "entry", [1])  # parent is a file: nothing to do


def test_a_part_file_whose_writer_was_killed_goes_with_the_next(tmp_path: Path) -> None:
    """A writer SIGKILLed mid-write leaves its part file; the next part file made in the
    directory sweeps it, and never one whose writer lives."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from vmbuild import cache\n"
            f"fd, part = cache.part_file(Path({str(tmp_path)!r}), '.compress-')\n"
            "print(part, flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    dead = Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    child.stdout.close()
    live_fd, live = cache.part_file(tmp_path, ".compress-")
    try:
        assert dead.parent == tmp_path and not dead.exists() and live.exists()
        fd, other = cache.part_file(tmp_path, ".compress-")  # sweeps again: keeps the live
        os.close(fd)
        other.unlink()
        assert live.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
    finally:
        os.close(live_fd)
    assert cache.sweep_parts(tmp_path) == [live]
