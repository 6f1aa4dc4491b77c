"""The three tar sinks are one protocol (mypy --strict checks the typed assignments);
the hashing tee (writer and reader) hashes, counts, passes on and stops."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.layer import write_members
from vmbuild.oci.sinks import Cancelled, HashingReader, HashingWriter, SinkFailed, TarSink
from vmbuild.streaming.fdwriter import FdWriter
from vmbuild.streaming.packing import HashSink


def test_every_tar_sink_takes_the_same_tar() -> None:
    read, write = os.pipe()
    try:
        piped: TarSink = FdWriter(write)
        hashed: TarSink = HashSink()
        buffer = io.BytesIO()
        with BlockWriter(buffer) as blocks:
            buffered: TarSink = blocks
            sizes = {write_members([], sink) for sink in (buffered, hashed, piped)}
        assert len(sizes) == 1
        if isinstance(piped, FdWriter):
            piped.flush()
        assert os.read(read, 1 << 16) == buffer.getvalue()
        assert isinstance(hashed, HashSink)
        assert hashed.digest == "sha256:" + hashlib.sha256(buffer.getvalue()).hexdigest()
    finally:
        os.close(read)
        os.close(write)


def test_the_hashing_tee_hashes_counts_and_passes_bytes_on() -> None:
    data = bytes(range(256)) * 5000
    out = io.BytesIO()
    writer = HashingWriter(out)
    writer.write(data[:1000])
    writer.write(memoryview(data)[1000:])
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (writer.digest, writer.size, out.getvalue()) == (expected, len(data), data)
    copies = io.BytesIO(), io.BytesIO()
    reader = HashingReader(io.BytesIO(data), *copies, None)
    assert reader.read(10) == data[:10]
    reader.drain()
    assert (reader.digest, reader.size) == (expected, len(data))
    assert [c.getvalue() for c in copies] == [data, data]


def test_a_stopped_writer_gives_up_with_the_callers_exception() -> None:
    class Gone(Exception):
        pass

    stop = threading.Event()
    writer = HashingWriter(None, stop=stop, cancelled=Gone)
    writer.write(b"x")
    stop.set()
    with pytest.raises(Gone):
        writer.write(b"y")
    assert writer.size == 1
    with pytest.raises(Cancelled):
        HashingWriter(stop=stop).write(b"z")


def test_a_failing_sink_is_told_apart_from_a_failing_source() -> None:
    class Full(io.RawIOBase):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    reader = HashingReader(io.BytesIO(b"abc"), Full())
    with pytest.raises(SinkFailed) as failed:
        reader.drain()
    assert isinstance(failed.value.exc, OSError)
