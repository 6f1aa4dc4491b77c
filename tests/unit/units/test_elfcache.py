"""Remembered ELF headers: used while a file's stat is unchanged, re-read otherwise."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vmbuild import cache
from vmbuild.units import elfcache
from vmbuild.units.elf import ElfInfo, read_elf
from vmbuild.units.elfcache import ElfCache
from vmbuild.units.graph import Graph

BASH = "/usr/bin/bash"
pytestmark = pytest.mark.skipif(not os.path.exists(BASH), reason="needs /usr/bin/bash")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # files made by the test count as settled
    reads: list[str] = []

    def counted(path: str) -> ElfInfo | None:
        reads.append(path)
        return read_elf(path)

    monkeypatch.setattr(elfcache, "read_elf", counted)
    return reads


def closure(roots: list[str]) -> Graph:
    cache = ElfCache(roots)
    graph = Graph(read_elf=cache.read)
    for root in roots:
        graph.path(root, "test")
    cache.save()
    return graph


def test_a_second_graph_reads_no_headers(_cache: list[str]) -> None:
    first = closure([BASH])
    assert os.path.realpath(BASH) in _cache
    _cache.clear()
    second = closure([BASH])
    assert _cache == []
    assert {n: u.refs for n, u in first.units.items()} == {
        n: u.refs for n, u in second.units.items()
    }


def test_a_changed_file_is_read_again(tmp_path: Path, _cache: list[str]) -> None:
    prog = tmp_path / "prog"
    shutil.copy(BASH, prog)
    closure([str(prog)])
    _cache.clear()
    closure([str(prog)])
    assert str(prog) not in _cache
    os.utime(prog)  # a new mtime and ctime
    closure([str(prog)])
    assert str(prog) in _cache


def test_a_corrupt_cache_file_is_ignored(_cache: list[str]) -> None:
    closure([BASH])
    cache = ElfCache([BASH])
    for path, (sig, _info) in cache.old.items():
        cache.old[path] = [sig, ["not", "headers"]]
    _cache.clear()
    assert cache.read(os.path.realpath(BASH)) == read_elf(os.path.realpath(BASH))
    assert _cache
