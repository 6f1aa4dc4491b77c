"""What runs remember in the cache, and finding an archive's original config bytes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from vmbuild.registry import known
from vmbuild.registry.rawconfig import find_raw_config

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def test_compressed_and_unpacked() -> None:
    assert known.compressed_blob(D1, "gzip") is None
    known.remember_compressed(D1, "gzip", D2, 42)
    assert known.compressed_blob(D1, "gzip") == (D2, 42)
    assert known.compressed_blob(D1, "zstd") is None
    known.remember_unpacked(D2, "gzip", D1, 1000)
    assert known.unpacked(D2) == ("gzip", D1, 1000)
    assert known.unpacked(D1) is None


def test_seen_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known, "SEEN_MAX", 10)
    known.remember_seen("h:5000", "a/b", [f"sha256:{i:064x}" for i in range(8)])
    known.remember_seen("h:5000", "c/d", [f"sha256:{i:064x}" for i in range(8, 12)])
    assert known.seen_in("h:5000", f"sha256:{11:064x}") == "c/d"
    assert known.seen_in("h:5000", f"sha256:{0:064x}") is None  # the oldest went
    assert known.seen_in("other:1", f"sha256:{11:064x}") is None


def test_corrupt_entries_are_ignored(tmp_path: Path) -> None:
    known.remember_compressed(D1, "gzip", D2, 42)
    for path in (tmp_path / "cache" / "layer-blobs").iterdir():
        path.write_text("{not json")
    assert known.compressed_blob(D1, "gzip") is None


def test_find_raw_config(tmp_path: Path) -> None:
    config = {"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": []}}
    raw = json.dumps(config, indent=4).encode()
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("x.json", b'{"other": 1}'), ("c.json", raw), ("bin", b"\0" * 10)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    empty = tmp_path / "work"
    empty.mkdir()
    assert find_raw_config(archive, empty, config) == raw
    layout = tmp_path / "layout"
    (layout / "blobs").mkdir(parents=True)
    (layout / "blobs" / "c").write_bytes(raw)
    assert find_raw_config(layout, empty, config) == raw
    assert find_raw_config(layout, empty, {"os": "windows"}) is None
