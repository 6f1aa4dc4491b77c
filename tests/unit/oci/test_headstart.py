"""A docker-archive's base layers copied ahead (oci.headstart): the same bytes as
written in order, only for layers whose check is remembered, a base that changes
meanwhile fails the write, and an error or a layout other than planned leaves no part
file, no thread and the old --out as it was."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import image_from_layers, layer_tar
from vmbuild import cache
from vmbuild.errors import ImageError
from vmbuild.oci import archive, headstart, layercheck
from vmbuild.oci.headstart import HeadStart
from vmbuild.oci.image import Image
from vmbuild.oci.output import OutputOptions, write_image
from vmbuild.oci.reader import BaseImage, read_image

PLAIN = OutputOptions(compression="none")
MTIME = 1234


@pytest.fixture
def memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the test's files are seconds old at most
    with layercheck.remembering(cache.FileMemo(layercheck.MEMO_KIND)):
        yield


def _base(tmp_path: Path, checked: bool = True) -> BaseImage:
    """A three-layer base (the middle one twice), its layers' checks remembered."""
    paths = [
        layer_tar(tmp_path / f"l{i}.tar", [("d", "d", ""), (f"d/f{i}", "f", os.urandom(9000))])
        for i in range(2)
    ]
    path = image_from_layers(tmp_path / "base.tar", [paths[0], paths[1], paths[1]])
    time.sleep(0.02)  # past the clock tick of the write
    base = read_image(path, tmp_path)
    if checked:
        for layer in base.layers:
            layer.blob.verify()  # type: ignore[attr-defined]
    return read_image(path, tmp_path)  # blobs not yet trusted in this build


def _image(tmp_path: Path, base: BaseImage) -> Image:
    top = layer_tar(tmp_path / "top.tar", [("top", "f", "new\n")])
    from vmbuild.oci.digest import of_file
    from vmbuild.oci.image import BlobRef, Layer

    layers = [*base.layers, Layer(of_file(top), BlobRef.whole(top), "none")]
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]}}  # fmt: skip
    return Image("app", "t", config, layers)


def _in_order(image: Image) -> bytes:
    sink = io.BytesIO()
    archive.write_docker_archive(image, sink, MTIME)
    return sink.getvalue()


def _parts(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".part")]


def test_the_planned_offsets_are_where_the_writer_puts_each_layer(tmp_path: Path) -> None:
    base = _base(tmp_path, checked=False)
    data = _in_order(_image(tmp_path, base))
    planned = archive.leading_layers(base.layers, MTIME)
    assert len(planned) == 2  # the repeated layer is stored once
    for offset, blob in planned:
        sink = io.BytesIO()
        blob.copy_to(sink)
        assert data[offset : offset + blob.size] == sink.getvalue()


def test_copied_ahead_the_archive_is_the_same_bytes(tmp_path: Path, memo: None) -> None:
    base = _base(tmp_path)
    image = _image(tmp_path, base)
    out = tmp_path / "out.tar"
    out.write_bytes(b"the old image")
    with headstart.head_start(out, PLAIN, MTIME) as head:
        assert head is not None
        head.start(base.layers)
        assert head.part is not None and _parts(tmp_path)  # started: the part exists
        write_image(image, out, PLAIN, MTIME, head=head)
    assert out.read_bytes() == _in_order(image)
    assert _parts(tmp_path) == [] and threading.active_count() == 1


def test_only_remembered_layers_are_copied_ahead(tmp_path: Path, memo: None) -> None:
    base = _base(tmp_path, checked=False)
    out = tmp_path / "out.tar"
    with headstart.head_start(out, PLAIN, MTIME) as head:
        assert head is not None
        head.start(base.layers)
        assert head.part is None  # nothing trusted: written in order, as without
        write_image(_image(tmp_path, base), out, PLAIN, MTIME, head=head)
    assert out.read_bytes() == _in_order(_image(tmp_path, base))


def test_compressed_or_oci_outputs_get_no_head_start(tmp_path: Path) -> None:
    for opts in (OutputOptions(), OutputOptions(format="oci-archive", compression="none")):
        with headstart.head_start(tmp_path / "o", opts, MTIME) as head:
            assert head is None


def test_a_base_changed_before_its_copy_fails_the_write(tmp_path: Path, memo: None) -> None:
    base = _base(tmp_path)
    out = tmp_path / "out.tar"
    out.write_bytes(b"the old image")
    gate = threading.Event()
    head = HeadStart(out, MTIME)
    real = head._copy

    def late(*a: object) -> None:
        gate.wait()
        real(*a)  # type: ignore[arg-type]

    head._copy = late  # type: ignore[method-assign,assignment]
    head.start(base.layers)
    with open(tmp_path / "base.tar", "r+b") as f:  # the same size, other bytes
        f.seek(2000)
        f.write(b"x")
    gate.set()
    with pytest.raises(ImageError, match="changed while it was read"):
        write_image(_image(tmp_path, base), out, PLAIN, MTIME, head=head)
    head.close()
    assert out.read_bytes() == b"the old image" and _parts(tmp_path) == []


def test_a_full_disk_in_the_copy_is_one_clear_error(
    tmp_path: Path, memo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(*a: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    base = _base(tmp_path)
    monkeypatch.setattr(os, "copy_file_range", full)
    out = tmp_path / "out.tar"
    with headstart.head_start(out, PLAIN, MTIME) as head, pytest.raises(Exception) as err:
        assert head is not None
        head.start(base.layers)
        write_image(_image(tmp_path, base), out, PLAIN, MTIME, head=head)
    assert f"cannot write {out}: No space left on device" in str(err.value)
    assert not out.exists() and _parts(tmp_path) == []


def test_an_error_in_the_build_stops_the_copy_and_removes_the_part(
    tmp_path: Path, memo: None
) -> None:
    base = _base(tmp_path)
    out = tmp_path / "out.tar"
    with pytest.raises(KeyboardInterrupt), headstart.head_start(out, PLAIN, MTIME) as head:
        assert head is not None
        head.start(base.layers)
        raise KeyboardInterrupt
    assert not out.exists() and _parts(tmp_path) == [] and threading.active_count() == 1


def test_an_archive_laid_out_otherwise_is_never_published(tmp_path: Path, memo: None) -> None:
    base = _base(tmp_path)
    out = tmp_path / "out.tar"
    out.write_bytes(b"the old image")
    other = _image(tmp_path, base)
    other.layers.insert(0, other.layers.pop())  # the new layer first: offsets move
    with headstart.head_start(out, PLAIN, MTIME) as head, pytest.raises(RuntimeError):
        assert head is not None
        head.start(base.layers)
        write_image(other, out, PLAIN, MTIME, head=head)
    assert out.read_bytes() == b"the old image" and _parts(tmp_path) == []


def test_at_most_max_ahead_layers_are_copied_ahead(
    tmp_path: Path, memo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headstart, "MAX_AHEAD", 1)
    base = _base(tmp_path)
    image = _image(tmp_path, base)
    out = tmp_path / "out.tar"
    with headstart.head_start(out, PLAIN, MTIME) as head:
        assert head is not None
        head.start(base.layers)
        assert len(head._ahead) == 1  # the second layer is written in order
        write_image(image, out, PLAIN, MTIME, head=head)
    assert out.read_bytes() == _in_order(image)
