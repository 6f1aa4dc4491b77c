"""Base layers checked once per version of their file (layercheck's memo, kept by
cache.FileMemo): a file unchanged since its check is trusted, any change is checked
again (even with its mtime put back), a corrupt one is then refused, and a memo entry
that is garbage is ignored."""

from __future__ import annotations

import gzip
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.crafted import sha, tar_bytes
from vmbuild import cache
from vmbuild.errors import ImageError
from vmbuild.oci import layercheck
from vmbuild.oci.image import BlobRef
from vmbuild.oci.layercheck import CheckedBlob

LAYER = tar_bytes([("etc", "d", ""), ("etc/a", "f", "a" * 3000), ("etc/l", "l", "a")])
# the same size, other bytes: what an in-place edit of the base leaves
OTHER = tar_bytes([("etc", "d", ""), ("etc/a", "f", "b" * 3000), ("etc/l", "l", "a")])
HEAD = b"HEAD" * 128


@pytest.fixture
def memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[cache.FileMemo]:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the test's files are seconds old at most
    m = cache.FileMemo(layercheck.MEMO_KIND)
    with layercheck.remembering(m):
        yield m


def _archive(tmp_path: Path, layer: bytes = LAYER) -> BlobRef:
    path = tmp_path / "outer"
    path.write_bytes(HEAD + layer + b"manifest.json follows")
    time.sleep(0.02)  # past the clock tick of the write
    return BlobRef(path, len(HEAD), len(layer))


def _blob(ref: BlobRef, **kw: str) -> CheckedBlob:
    return CheckedBlob(ref, "none", "layer 1", diff_id=sha(LAYER), **kw)


def _no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **kw: object) -> None:
        raise AssertionError("the layer was read for a check")

    monkeypatch.setattr(layercheck, "check_layer", refuse)


def test_an_unchanged_file_is_checked_once(
    tmp_path: Path, memo: cache.FileMemo, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _archive(tmp_path)
    first = _blob(ref)
    first.copy_to(io.BytesIO())
    assert first.checked and first.digest == sha(LAYER)
    _no_check(monkeypatch)
    again = _blob(ref)  # a later build: a new blob of the same file
    out = io.BytesIO()
    again.copy_to(out)
    assert out.getvalue() == LAYER and again.checked and again.digest == sha(LAYER)
    plain = io.BytesIO()
    _blob(ref).plain_to(plain)
    assert plain.getvalue() == LAYER
    _blob(ref).verify()


def test_a_compressed_layer_is_remembered_with_its_digest(
    tmp_path: Path, memo: cache.FileMemo, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_bytes = gzip.compress(LAYER, mtime=0)
    path = tmp_path / "layer.gz"
    path.write_bytes(blob_bytes)
    time.sleep(0.02)
    ref = BlobRef.whole(path)
    CheckedBlob(ref, "gzip", "layer 1", diff_id=sha(LAYER)).verify()
    _no_check(monkeypatch)
    plain = io.BytesIO()
    again = CheckedBlob(ref, "gzip", "layer 1", diff_id=sha(LAYER))
    again.plain_to(plain)
    assert plain.getvalue() == LAYER and again.digest == sha(blob_bytes)
    # another expected digest is another question: not answered by the memo
    with pytest.raises(AssertionError, match="read for a check"):
        CheckedBlob(ref, "gzip", "l", diff_id=sha(LAYER), digest="sha256:" + "0" * 64).verify()


def test_a_file_changed_in_place_with_its_mtime_put_back_is_checked_again(
    tmp_path: Path, memo: cache.FileMemo
) -> None:
    ref = _archive(tmp_path)
    _blob(ref).verify()
    before = os.stat(ref.path)
    with open(ref.path, "r+b") as f:  # same size, same inode
        f.seek(len(HEAD))
        f.write(OTHER)
    os.utime(ref.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(ref.path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    with pytest.raises(ImageError, match="not its diff_id"):
        _blob(ref).copy_to(io.BytesIO())


def test_a_replaced_file_is_checked_again(tmp_path: Path, memo: cache.FileMemo) -> None:
    ref = _archive(tmp_path)
    _blob(ref).verify()
    stamp = os.stat(ref.path)
    new = tmp_path / "new"
    new.write_bytes(HEAD + OTHER + b"manifest.json follows")
    os.utime(new, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.replace(new, ref.path)
    with pytest.raises(ImageError, match="not its diff_id"):
        _blob(ref).verify()


def test_a_file_written_while_a_trusted_copy_reads_it_fails_the_copy(
    tmp_path: Path, memo: cache.FileMemo
) -> None:
    ref = _archive(tmp_path)
    _blob(ref).verify()
    time.sleep(0.02)

    class Meddling(io.BytesIO):
        def write(self, data: object) -> int:
            with open(ref.path, "r+b") as f:
                f.seek(len(HEAD))
                f.write(OTHER[:512])
            return super().write(data)  # type: ignore[arg-type]

    with pytest.raises(ImageError, match="changed while it was read"):
        _blob(ref).copy_to(Meddling())


def test_a_file_changed_just_before_its_check_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    ref = _archive(tmp_path)  # seconds old at most: within cache.RACY_NS
    with layercheck.remembering(cache.FileMemo(layercheck.MEMO_KIND)):
        _blob(ref).verify()
    assert not (tmp_path / "cache" / layercheck.MEMO_KIND).exists()


def test_a_garbage_memo_entry_is_ignored(tmp_path: Path, memo: cache.FileMemo) -> None:
    ref = _archive(tmp_path, OTHER)
    st = os.stat(ref.path)
    what = _blob(ref)._what()
    memo.record(st, what, {"diff_id": sha(LAYER), "digest": 7}, time.time_ns())
    with pytest.raises(ImageError, match="not its diff_id"):
        _blob(ref).verify()
    entries = list((tmp_path / "cache" / layercheck.MEMO_KIND).iterdir())
    assert len(entries) == 1
    entries[0].write_text("{not json")
    with pytest.raises(ImageError, match="not its diff_id"):
        _blob(ref).verify()


def test_without_a_memo_nothing_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)
    ref = _archive(tmp_path)
    _blob(ref).verify()
    assert not (tmp_path / "cache").exists()
