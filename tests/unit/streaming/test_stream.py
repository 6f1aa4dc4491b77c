"""The streamed docker-archive: same bytes as the archive writer, one pass, bytes out early."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from vmbuild import cache
from vmbuild.errors import ImageError
from vmbuild.oci.archive import write_docker_archive
from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.compress import FixedChunks
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.layer import Owner
from vmbuild.oci.tarplan import TarPlan, plan_tree
from vmbuild.oci.tree import from_roots
from vmbuild.streaming.hashpool import HashPool
from vmbuild.streaming.lazy import TreeLayer, diff_id_of
from vmbuild.streaming.packing import pack
from vmbuild.streaming.stream import layer_id, write_streaming


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def tree_layer(root: Path, files: dict[str, str | bytes]) -> TreeLayer:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        raw = data.encode() if isinstance(data, str) else data
        (root / name).write_bytes(raw)
    return TreeLayer(from_roots([root]), 1, Owner(0, 0))


def finish(layers: list[Layer], kept: list[int]) -> Image:
    config = {"rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}}
    return Image("demo", "t", config, layers)


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[TarPlan]:
    """Every plan made (each is a pass over the tree's metadata)."""
    made: list[TarPlan] = []
    real = plan_tree

    def counted(*args: object) -> TarPlan:
        made.append(real(*args))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr("vmbuild.streaming.lazy.plan_tree", counted)
    return made


def test_same_bytes_as_the_archive_writer_each_layer_planned_once(
    tmp_path: Path, plans: list[TarPlan]
) -> None:
    a = tree_layer(tmp_path / "a", {"etc/a": "a" * 3000})
    b = tree_layer(tmp_path / "b", {"usr/b": "b" * 20000})  # a size of its own
    dup = tree_layer(tmp_path / "c", {"etc/a": "a" * 3000})  # same as a: left out
    out = io.BytesIO()
    image, ids = write_streaming([], [a, b, dup], finish, out, 7)
    assert len(plans) == 3  # one plan each, written and hashed from the same plan
    assert ids == [layer_id(0), layer_id(1)]
    again = io.BytesIO()
    write_docker_archive(image, again, 7, ids)
    assert out.getvalue() == again.getvalue()
    assert [x.diff_id for x in image.layers] == [diff_id_of(a), diff_id_of(b)]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        assert json.load(f)[0]["Layers"] == [f"{i}/layer.tar" for i in ids]
        f = tar.extractfile(f"{ids[0]}/layer.tar")
        assert f is not None
        with tarfile.open(fileobj=f) as layer:
            assert layer.getnames() == ["etc", "etc/a"]


def test_base_layers_are_copied_and_not_repeated(tmp_path: Path) -> None:
    base_tar = tmp_path / "base.tar"
    base_layer = tree_layer(tmp_path / "base", {"lib/x": "x" * 700})
    with open(base_tar, "wb") as f:
        base_layer.copy_to(f)
    base = Layer(diff_id_of(base_layer), BlobRef.whole(base_tar), "none")
    same = tree_layer(tmp_path / "same", {"lib/x": "x" * 700})
    other = tree_layer(tmp_path / "other", {"lib/y": "y"})
    out = io.BytesIO()
    image, ids = write_streaming([base, base], [same, other], finish, out, 1)
    assert [x.diff_id for x in image.layers] == [base.diff_id, base.diff_id, diff_id_of(other)]
    assert ids == [layer_id(0), layer_id(0), layer_id(1)]
    again = io.BytesIO()
    write_docker_archive(image, again, 1, ids)
    assert out.getvalue() == again.getvalue()


class FirstBytes(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.started.set()
        return super().write(data)


class Gated(TreeLayer):
    """A layer that cannot be planned before the sink has received bytes."""

    def __init__(self, inner: TreeLayer, gate: threading.Event):
        super().__init__(inner.tree, inner.mtime, inner.owner)
        self.gate = gate

    def tar_plan(self) -> TarPlan:
        if not self.gate.wait(10):
            raise AssertionError("the stream waited for the last layer before writing")
        return super().tar_plan()


def test_first_bytes_before_the_last_layer_is_planned(tmp_path: Path) -> None:
    sink = FirstBytes()
    first = tree_layer(tmp_path / "a", {"a": b"\1" * (3 << 20)})
    last = Gated(tree_layer(tmp_path / "b", {"b": "b"}), sink.started)
    image, _ = write_streaming([], [first, last], finish, sink, 1)
    assert len(image.layers) == 2


def test_a_file_that_changed_size_is_caught(tmp_path: Path) -> None:
    layer = tree_layer(tmp_path / "a", {"f": "one", "g": "x"})
    layer.exact_size()
    (tmp_path / "a" / "f").write_text("three")
    with pytest.raises(ImageError, match="changed while") as info:
        write_streaming([], [layer], finish, io.BytesIO(), 1)
    assert str(tmp_path / "a" / "f") in info.value.message
    layer.exact_size()
    (tmp_path / "a" / "f").unlink()
    with pytest.raises(ImageError, match="cannot read"):
        write_streaming([], [layer], finish, io.BytesIO(), 1)


@pytest.mark.parametrize("size_changes", [False, True])
def test_a_file_changed_after_it_was_written_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size_changes: bool
) -> None:
    """Written and hashed in two passes: a change between or after them fails the
    stream (the lstat check), whichever pass read the file first."""
    layer = tree_layer(tmp_path / "a", {"f": "one", "g": "x" * 5000})
    real = pack

    def pack_then_change(plan: TarPlan, out: object) -> None:
        real(plan, out)  # type: ignore[arg-type]
        (tmp_path / "a" / "f").write_text("three" if size_changes else "six")

    monkeypatch.setattr("vmbuild.streaming.stream.pack", pack_then_change)
    with pytest.raises(ImageError, match="changed while"):
        write_streaming([], [layer], finish, io.BytesIO(), 1)


class Broken(io.BytesIO):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_reader_ends_the_stream_with_broken_pipe(tmp_path: Path) -> None:
    layer = tree_layer(tmp_path / "a", {"f": b"\0" * (20 << 20)})
    with pytest.raises(BrokenPipeError):
        write_streaming([], [layer], finish, Broken(), 1)


def test_a_remembered_diff_id_spares_the_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_NS", 0)  # files made by the test count as settled
    files: dict[str, str | bytes] = {"f": "one", "g": "x" * 5000}
    first = io.BytesIO()
    image, _ = write_streaming([], [tree_layer(tmp_path / "a", files)], finish, first, 1)
    hashed: list[int] = []
    real = HashPool.submit

    def counted(self: HashPool, key: int, plan: TarPlan) -> None:
        hashed.append(key)
        real(self, key, plan)

    monkeypatch.setattr(HashPool, "submit", counted)
    again = io.BytesIO()
    layer = tree_layer(tmp_path / "a", {})
    image2, _ = write_streaming([], [layer], finish, again, 1)
    assert hashed == [] and again.getvalue() == first.getvalue()
    assert image2.layers[0].diff_id == image.layers[0].diff_id
    # a file that changes while a remembered layer is written fails the build
    real_pack = pack

    def pack_then_change(plan: TarPlan, out: BlockWriter) -> None:
        real_pack(plan, out)
        (tmp_path / "a" / "f").write_text("two")

    monkeypatch.setattr("vmbuild.streaming.stream.pack", pack_then_change)
    with pytest.raises(ImageError, match="changed while"):
        write_streaming([], [tree_layer(tmp_path / "a", {})], finish, io.BytesIO(), 1)
    monkeypatch.setattr("vmbuild.streaming.stream.pack", real_pack)
    changed = io.BytesIO()
    image3, _ = write_streaming([], [tree_layer(tmp_path / "a", {})], finish, changed, 1)
    assert hashed and image3.layers[0].diff_id != image.layers[0].diff_id


def test_racy_trees_are_not_remembered(tmp_path: Path) -> None:
    layer = tree_layer(tmp_path / "a", {"f": "one"})  # just written: racy
    write_streaming([], [layer], finish, io.BytesIO(), 1)
    assert tree_layer(tmp_path / "a", {}).known_diff_id() is None


class Writes(io.BytesIO):
    """Records the size of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sizes.append(len(data))
        return super().write(data)


def test_a_compressing_sink_gets_the_same_writes_cold_or_warm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_NS", 0)
    trees: dict[str, dict[str, str | bytes]] = {
        "a": {"x": b"\1" * 700_000, "y": "y"},
        "b": {"z": "z"},
        "c": {"w": "w"},  # the size of b: b's diff_id is needed before c is written
    }
    for name, files in trees.items():
        tree_layer(tmp_path / name, files)
    runs = []
    for _ in range(2):  # diff_ids hashed, then remembered
        sink = Writes()
        layers = [tree_layer(tmp_path / name, {}) for name in trees]
        write_streaming([], layers, finish, FixedChunks(sink, 1 << 16), 1)  # type: ignore[arg-type]
        runs.append((sink.sizes, sink.getvalue()))
    assert runs[0] == runs[1]
    assert set(runs[0][0][:-1]) == {1 << 16}
