"""The cache's small JSON files: one reader and one atomic writer for every kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuild.cache import CacheError, directory, read_json, write_json


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


def test_a_file_where_a_cache_directory_goes_is_named(tmp_path: Path) -> None:
    (tmp_path / "debs").write_text("x")
    with pytest.raises(CacheError, match=r"debs/unpacked cannot be made: \S+/debs is not a dir"):
        directory(tmp_path / "debs" / "unpacked")
    assert directory(tmp_path / "steps" / "x") == tmp_path / "steps" / "x"
