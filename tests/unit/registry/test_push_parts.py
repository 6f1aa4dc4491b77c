"""push's compressed layers are written as part files in the blob cache: one a killed
push left (N16: 267 MB for a 300 MB layer) goes with the next push's."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from vmbuild.oci.image import BlobRef, Layer
from vmbuild.registry import blobs, push


def test_a_killed_push_leaves_nothing_the_next_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    store = blobs.ensure_store()
    dead = store / ".compress-k1ll3d.part"  # what a SIGKILLed push left (nobody holds it)
    dead.write_bytes(b"x" * 4096)
    tar = tmp_path / "layer.tar"
    tar.write_bytes(bytes(10240))
    diff_id = "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()
    layer = Layer(diff_id, BlobRef.whole(tar), "none", diff_id)
    blob = push._compress(layer, "gzip", None, threading.Event())
    assert blob.path == blobs.store_path(blob.digest) and blob.path.is_file()
    assert not dead.exists()
    assert [p.name for p in store.iterdir() if p.name.endswith(".part")] == []
