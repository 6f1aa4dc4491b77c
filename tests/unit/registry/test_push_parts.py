"""push's compressed layers are written as part files in the blob cache: the one a
killed push left (N16: 267 MB for a 300 MB layer, never removed) goes with the next
push's, and one whose push still runs stays."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vmbuild.oci.image import BlobRef, Layer
from vmbuild.registry import blobs, push

# a push compressing a layer whose bytes come slowly: it says so, then waits
SLOW_PUSH = """
import threading, time
from vmbuild.registry import push

class Slow:
    size = 1 << 20
    def copy_to(self, out):
        out.write(bytes(1 << 16))
        print("compressing", flush=True)
        time.sleep(60)

push._compress(push.Layer("sha256:" + "0" * 64, Slow(), "none"), "gzip", None, threading.Event())
"""


def _parts(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.name.endswith(".part"))


def _slow_push(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PUSH], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "compressing\n"
    return proc


def test_a_killed_push_leaves_nothing_the_next_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    env = {**os.environ, "VMBUILD_CACHE_DIR": str(tmp_path / "cache")}
    store = blobs.ensure_store()
    killed, running = _slow_push(env), _slow_push(env)
    (store / ".compress-3xq9v2ab.part").write_bytes(bytes(4096))  # an older vmbuild's
    try:
        killed.kill()
        killed.wait()
        assert len(_parts(store)) == 3
        tar = tmp_path / "layer.tar"
        tar.write_bytes(bytes(10240))
        diff_id = "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()
        layer = Layer(diff_id, BlobRef.whole(tar), "none", diff_id)
        blob = push._compress(layer, "gzip", None, threading.Event())
        assert blob.path == blobs.store_path(blob.digest) and blob.path.is_file()
        assert len(_parts(store)) == 1  # the running push's, kept
    finally:
        running.kill()
        running.wait()
        for proc in (killed, running):
            assert proc.stdout is not None
            proc.stdout.close()
    push._compress(layer, "gzip", None, threading.Event())  # (from the cache: no part)
    blobs.store_path(blob.digest).unlink()
    push._compress(layer, "gzip", None, threading.Event())
    assert _parts(store) == []
