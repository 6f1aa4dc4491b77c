"""`vmbuild cache ls` and `vmbuild cache prune` through the command line."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.cli import vmbuild_cli


def _entry(root: Path, rel: str, size: int, age_days: float) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"y" * size)
    t = time.time() - age_days * 86400
    os.utime(path, (t, t))


def test_ls_shows_kinds_and_sizes_and_prune_frees_them(tmp_path: Path) -> None:
    env = {"VMBUILD_CACHE_DIR": str(tmp_path)}
    _entry(tmp_path, "blobs/sha256/" + "a" * 64, 3 << 20, 60)
    _entry(tmp_path, "steps/" + "b" * 64 + "/layer.tar", 1 << 20, 0)
    ls = vmbuild_cli("cache", "ls", env=env)
    assert ls.returncode == 0, ls.stderr
    assert f"cache: {tmp_path}" in ls.stdout
    blobs = next(line for line in ls.stdout.splitlines() if line.startswith("blobs "))
    assert "3.0 MiB" in blobs and "registry blobs" in blobs
    assert "runAsRoot step results" in ls.stdout
    assert "4.0 MiB" in ls.stdout.splitlines()[-1]

    dry = vmbuild_cli("cache", "prune", "--older-than", "30", "--dry-run", env=env)
    assert dry.returncode == 0 and "would free 3.0 MiB" in dry.stdout
    assert (tmp_path / "blobs/sha256" / ("a" * 64)).exists()

    pruned = vmbuild_cli("cache", "prune", "--older-than", "30", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 1 entries, freed 3.0 MiB" in pruned.stdout
    assert not (tmp_path / "blobs/sha256" / ("a" * 64)).exists()
    assert (tmp_path / "steps" / ("b" * 64) / "layer.tar").exists()

    pruned = vmbuild_cli("cache", "prune", "--max-size", "0", env=env)
    assert pruned.returncode == 0 and "freed 1.0 MiB" in pruned.stdout


def test_prune_without_a_limit_is_one_error_line(tmp_path: Path) -> None:
    proc = vmbuild_cli("cache", "prune", env={"VMBUILD_CACHE_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("vmbuild: error: cache prune needs")
    bad = vmbuild_cli(
        "cache", "prune", "--max-size", "big", env={"VMBUILD_CACHE_DIR": str(tmp_path)}
    )
    assert bad.returncode != 0 and "not a size" in bad.stderr
