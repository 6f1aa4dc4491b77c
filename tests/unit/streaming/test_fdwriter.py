"""The stream into a pipe: file data spliced, same bytes as into any other sink."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmbuild.errors import ImageError
from vmbuild.oci.image import Image, Layer
from vmbuild.oci.layer import Owner
from vmbuild.oci.tarplan import TarPlan
from vmbuild.oci.tree import from_roots
from vmbuild.streaming.fdwriter import FdWriter, pipe_fd
from vmbuild.streaming.lazy import TreeLayer
from vmbuild.streaming.packing import pack
from vmbuild.streaming.stream import write_streaming


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def finish(layers: list[Layer], kept: list[int]) -> Image:
    config = {"rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]}}
    return Image("demo", "t", config, layers)


def layers_in(tmp_path: Path) -> list[TreeLayer]:
    files = {
        "a/usr/lib/big": bytes(range(251)) * 12600,  # several splices
        "a/usr/lib/small": b"s" * 100,
        "b/etc/conf": b"c" * 513,
        "b/etc/empty": b"",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return [TreeLayer(from_roots([tmp_path / d]), 1, Owner(0, 0)) for d in ("a", "b")]


class Reader:
    """The read end of a pipe, read to its end in a thread."""

    def __init__(self, gated: bool = False) -> None:
        self.gate = threading.Event()  # reading starts once it is set
        if not gated:
            self.gate.set()
        r, w = os.pipe()
        self.sink = os.fdopen(w, "wb")
        self.source = os.fdopen(r, "rb")
        self.data = b""
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self) -> None:
        self.gate.wait(10)
        self.data = self.source.read()

    def close(self) -> bytes:
        self.sink.close()
        self.thread.join()
        self.source.close()
        return self.data


@pytest.fixture
def reader() -> Iterator[Reader]:
    r = Reader()
    yield r
    if not r.sink.closed:
        r.close()


def test_a_pipe_gets_the_bytes_any_sink_gets(tmp_path: Path, reader: Reader) -> None:
    assert pipe_fd(reader.sink) is not None
    assert pipe_fd(io.BytesIO()) is None
    image, ids = write_streaming([], layers_in(tmp_path), finish, reader.sink, 5)
    piped = reader.close()
    plain = io.BytesIO()
    image2, ids2 = write_streaming([], layers_in(tmp_path), finish, plain, 5)
    assert piped == plain.getvalue()
    assert (image.config, ids) == (image2.config, ids2)


def test_a_closed_reader_is_a_broken_pipe(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    with os.fdopen(w, "wb") as sink, pytest.raises(BrokenPipeError):
        write_streaming([], layers_in(tmp_path), finish, sink, 5)


def test_a_file_changed_after_it_was_spliced_is_caught(
    tmp_path: Path, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spliced pages are read later: the check comes after the reader took them all."""
    layers = layers_in(tmp_path)
    real = pack

    def pack_then_change(plan: TarPlan, out: FdWriter) -> None:
        real(plan, out)
        with open(tmp_path / "b" / "etc" / "conf", "r+b") as f:
            f.write(b"X")  # same size

    monkeypatch.setattr("vmbuild.streaming.stream.pack", pack_then_change)
    drained: list[int] = []
    real_drain = FdWriter.drain

    def counted(self: FdWriter, poll: float = 0.001) -> None:
        real_drain(self, poll)
        drained.append(1)

    monkeypatch.setattr(FdWriter, "drain", counted)
    with pytest.raises(ImageError, match="changed while"):
        write_streaming([], layers, finish, reader.sink, 5)
    assert drained == [1]


def test_drain_waits_for_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    out = FdWriter(w)
    out.write(b"x" * 1000)
    sleeps: list[float] = []

    def read_instead(seconds: float) -> None:
        sleeps.append(seconds)
        os.read(r, 600)

    monkeypatch.setattr("vmbuild.streaming.fdwriter.time.sleep", read_instead)
    out.drain()
    assert len(sleeps) == 2  # 1000 bytes, read 600 at a time
    os.close(r)
    out.write(b"y")
    with pytest.raises(BrokenPipeError):
        out.drain()
    os.close(w)


def test_a_file_shorter_than_planned_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    r, w = os.pipe()
    out = FdWriter(w)
    with pytest.raises(ImageError, match="changed while") as info:
        out.copy_file(path, 5)
    assert str(path) in info.value.message
    with pytest.raises(ImageError, match="cannot read"):
        out.copy_file(tmp_path / "missing", 1)
    out.copy_file(path, 2, 1)  # a range inside a larger file
    out.flush()
    assert os.read(r, 10) == b"bc"
    os.close(r)
    os.close(w)


def test_a_non_blocking_pipe_waits_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = Reader(gated=True)  # reads only once the writer found the pipe full
    os.set_blocking(reader.sink.fileno(), False)
    waits: list[int] = []
    real = FdWriter._wait

    def counted(self: FdWriter) -> None:
        waits.append(1)
        reader.gate.set()
        real(self)

    monkeypatch.setattr(FdWriter, "_wait", counted)
    write_streaming([], layers_in(tmp_path), finish, reader.sink, 5)
    piped = reader.close()
    plain = io.BytesIO()
    write_streaming([], layers_in(tmp_path), finish, plain, 5)
    assert piped == plain.getvalue() and len(piped) > (3 << 20)
    assert waits
