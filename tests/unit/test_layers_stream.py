"""The streamed docker-archive: same bytes as the archive writer, bytes out early."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from vmbuild.errors import ImageError
from vmbuild.layers import lazy
from vmbuild.layers.lazy import TreeLayer
from vmbuild.layers.stream import write_streaming
from vmbuild.oci.archive import write_docker_archive
from vmbuild.oci.image import Image, Layer
from vmbuild.oci.layer import Owner
from vmbuild.oci.tree import from_roots


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def tree_layer(root: Path, files: dict[str, str]) -> TreeLayer:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return TreeLayer(from_roots([root]), 1, Owner(0, 0))


def finish(layers: list[Layer], kept: list[int]) -> Image:
    config = {"rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}}
    return Image("demo", "t", config, layers)


def test_same_bytes_as_the_archive_writer(tmp_path: Path) -> None:
    a = tree_layer(tmp_path / "a", {"etc/a": "a" * 3000})
    b = tree_layer(tmp_path / "b", {"usr/b": "b"})
    dup = tree_layer(tmp_path / "c", {"etc/a": "a" * 3000})  # same diff_id as a: left out
    out = io.BytesIO()
    image = write_streaming([], [a, b, dup], finish, out, 7)
    again = io.BytesIO()
    write_docker_archive(image, again, 7)
    assert out.getvalue() == again.getvalue()
    assert [x.diff_id for x in image.layers] == [a.diff_id, b.diff_id]


class FirstBytes(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.started.set()
        return super().write(data)


class Gated:
    """A layer that cannot be measured before the sink has received bytes."""

    def __init__(self, inner: TreeLayer, gate: threading.Event):
        self.inner, self.gate = inner, gate

    def measure(self) -> tuple[str, int]:
        if not self.gate.wait(10):
            raise AssertionError("the stream waited for the last layer before writing")
        return self.inner.measure()

    @property
    def size(self) -> int:
        return self.inner.size

    def copy_to(self, sink: BinaryIO) -> None:
        self.inner.copy_to(sink)


def test_first_bytes_before_the_last_layer_is_read(tmp_path: Path) -> None:
    sink = FirstBytes()
    first = tree_layer(tmp_path / "a", {"a": "a"})
    last = Gated(tree_layer(tmp_path / "b", {"b": "b"}), sink.started)
    image = write_streaming([], [first, last], finish, sink, 1)
    assert len(image.layers) == 2


def test_measure_is_cached_and_a_change_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lazy, "RACY_NS", 0)  # files made by the test count as settled
    layer = tree_layer(tmp_path / "a", {"f": "one"})
    measured = layer.measure()
    key, racy = lazy.fingerprint(layer.tree, 1, Owner(0, 0))
    assert not racy and lazy._load(key) == measured
    again = TreeLayer(from_roots([tmp_path / "a"]), 1, Owner(0, 0))
    assert again.measure() == measured
    (tmp_path / "a" / "f").write_text("two")  # same size, new content
    with pytest.raises(ImageError, match="changed while"):
        again.copy_to(io.BytesIO())
    assert lazy._load(key) is None


def test_racy_trees_are_not_cached_and_are_hashed_again(tmp_path: Path) -> None:
    layer = tree_layer(tmp_path / "a", {"f": "one"})
    measured = layer.measure()
    key, racy = lazy.fingerprint(layer.tree, 1, Owner(0, 0))
    assert racy and lazy._load(key) is None
    out = io.BytesIO()
    layer.copy_to(out)
    assert len(out.getvalue()) == measured[1]
    (tmp_path / "a" / "f").write_text("two")
    with pytest.raises(ImageError, match="changed while"):
        layer.copy_to(io.BytesIO())
