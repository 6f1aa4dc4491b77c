"""The three tar sinks are one protocol (mypy --strict checks the typed assignments)."""

from __future__ import annotations

import hashlib
import io
import os

from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.layer import write_members
from vmbuild.oci.sinks import TarSink
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
