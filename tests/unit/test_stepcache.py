"""The step cache: keys over inputs, verified lookups, atomic and concurrent publishing."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest

from tests.support.crafted import tar_bytes
from vmbuild import stepcache


def _layer(path: Path, data: bytes, name: str = "data") -> tuple[Path, str]:
    """A layer tar holding one file ``name`` with ``data``."""
    tar = tar_bytes([(name, "f", data)])
    path.write_bytes(tar)
    return path, "sha256:" + hashlib.sha256(tar).hexdigest()


def _content(layer: Path) -> bytes:
    with tarfile.open(layer) as tar:
        f = tar.extractfile(tar.getmembers()[0])
        assert f is not None
        return f.read()


def test_key_covers_every_input_and_ignores_order() -> None:
    base = {"script": "true", "uid": 0, "base": ["sha256:a"]}
    assert stepcache.step_key(base) == stepcache.step_key(dict(reversed(base.items())))
    for change in ({"script": "false"}, {"uid": 1}, {"base": ["sha256:b"]}, {"extra": None}):
        assert stepcache.step_key({**base, **change}) != stepcache.step_key(base)


def test_publish_then_lookup(tmp_path: Path) -> None:
    layer, diff_id = _layer(tmp_path / "l.tar", b"layer bytes")
    key = stepcache.step_key({"n": 1})
    assert stepcache.lookup(key) is None
    stored = stepcache.publish(key, layer, diff_id, {"step": "runAsRoot"})
    found = stepcache.lookup(key)
    assert found == stored
    assert found is not None and _content(found.layer) == b"layer bytes"
    assert found.diff_id == diff_id and found.meta == {"step": "runAsRoot"}
    with stepcache.disabled():
        assert stepcache.lookup(key) is None
    assert stepcache.lookup(key) is not None


def test_corrupt_entry_is_ignored_and_replaced(tmp_path: Path) -> None:
    layer, diff_id = _layer(tmp_path / "l.tar", b"good")
    key = stepcache.step_key({"n": 2})
    stored = stepcache.publish(key, layer, diff_id, {})
    stored.layer.unlink()
    stored.layer.write_bytes(b"bad")  # a different file: the source stays intact
    assert stepcache.lookup(key) is None
    (stored.layer.parent / "meta.json").write_text("{not json")
    assert stepcache.lookup(key) is None
    again = stepcache.publish(key, layer, diff_id, {})
    assert _content(again.layer) == b"good"
    assert stepcache.lookup(key) is not None


def test_half_written_entries_are_invisible(tmp_path: Path) -> None:
    key = stepcache.step_key({"n": 3})
    stepcache.root().mkdir(parents=True, exist_ok=True)
    (stepcache.root() / f".{key[:12]}-partial").mkdir()  # what a killed writer leaves
    assert stepcache.lookup(key) is None
    (stepcache.root() / key).mkdir()  # an entry without its files
    assert stepcache.lookup(key) is None


def test_concurrent_publishers_agree(tmp_path: Path) -> None:
    key = stepcache.step_key({"n": 4})
    results: list[stepcache.CachedStep] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            layer, diff_id = _layer(tmp_path / f"l{i}.tar", b"same result")
            results.append(stepcache.publish(key, layer, diff_id, {}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.diff_id for r in results}) == 1
    left = [p.name for p in stepcache.root().iterdir()]
    assert sorted(left) == [f".{key}.lock", key]  # the entry, and the lock it is held by


def test_a_file_in_the_entrys_place_is_replaced(tmp_path: Path) -> None:
    layer, diff_id = _layer(tmp_path / "l.tar", b"good")
    key = stepcache.step_key({"n": 4})
    stepcache.root().mkdir(parents=True, exist_ok=True)
    stepcache.entry(key).write_text("not an entry")
    stored = stepcache.publish(key, layer, diff_id, {})
    assert stored.layer == stepcache.entry(key) / stepcache.LAYER
    assert stepcache.lookup(key) == stored


def test_a_step_cache_that_cannot_be_written_costs_a_warning(tmp_path: Path) -> None:
    layer, diff_id = _layer(tmp_path / "l.tar", b"good")
    key = stepcache.step_key({"n": 5})
    shutil.rmtree(stepcache.root(), ignore_errors=True)
    stepcache.root().write_text("a file where the step cache goes")
    assert stepcache.lookup(key) is None
    with pytest.warns(UserWarning, match="step cache cannot keep .* not a directory"):
        stored = stepcache.publish(key, layer, diff_id, {"step": "runAsRoot"})
    assert stored == stepcache.CachedStep(layer, diff_id, {"step": "runAsRoot"})


@pytest.mark.parametrize("name", ["../../../../tmp/x", "/etc/x", "a\nb"])
def test_a_forged_entry_with_an_unsafe_name_is_a_miss_with_one_warning(
    tmp_path: Path, name: str
) -> None:
    """An entry whose meta.json names its layer's true diff_id (written by hand into
    the cache directory) is still checked as every layer vmbuild reads."""
    key = stepcache.step_key({"n": 5})
    layer, diff_id = _layer(tmp_path / "l.tar", b"x", name)
    where = stepcache.entry(key)
    where.mkdir(parents=True)
    (where / stepcache.LAYER).write_bytes(layer.read_bytes())
    doc = {"format": stepcache.FORMAT, "diff_id": diff_id, "meta": {}}
    (where / stepcache.META).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="step cache entry .*: unsafe") as caught:
        assert stepcache.lookup(key) is None
    assert len(caught) == 1
