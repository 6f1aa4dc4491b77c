"""A file's byte range into another: by copy_file_range, else sendfile, else read and
write; into a sink that is not a file, by its write; a short file is EndedEarly."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from vmbuild.oci import filecopy

DATA = bytes(range(256)) * 4096  # 1 MiB


def _refused(*a: object) -> int:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize("refuse", [(), ("copy_file_range",), ("copy_file_range", "sendfile")])
def test_kernel_copy_appends_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse: tuple[str, ...]
) -> None:
    for name in refuse:
        monkeypatch.setattr(os, name, _refused)
    src = tmp_path / "src"
    src.write_bytes(b"x" * 100 + DATA + b"y" * 100)
    dst = tmp_path / "dst"
    with open(src, "rb") as s, open(dst, "wb") as d:
        d.write(b"head")
        d.flush()
        filecopy.kernel_copy(s.fileno(), d.fileno(), 100, len(DATA))
        assert s.tell() == 0  # the source's position is left alone
        d.write(b"tail")
    assert dst.read_bytes() == b"head" + DATA + b"tail"


def test_other_errors_are_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*a: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    src = tmp_path / "src"
    src.write_bytes(DATA)
    with open(src, "rb") as s, open(tmp_path / "dst", "wb") as d, pytest.raises(OSError) as err:
        filecopy.kernel_copy(s.fileno(), d.fileno(), 0, len(DATA))
    assert err.value.errno == errno.ENOSPC


def test_a_short_file_ends_early(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(DATA[:1000])
    with open(src, "rb") as s, open(tmp_path / "dst", "wb") as d:
        with pytest.raises(filecopy.EndedEarly):
            filecopy.kernel_copy(s.fileno(), d.fileno(), 0, 2000)
        with pytest.raises(filecopy.EndedEarly):
            filecopy.copy_range(io.BytesIO(), s.fileno(), 500, 1000)


def test_a_sink_that_is_not_a_file_gets_writes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(DATA * 3)
    sink = io.BytesIO()
    with open(src, "rb") as s:
        filecopy.copy_range(sink, s.fileno(), len(DATA), len(DATA) + 7)
    assert sink.getvalue() == DATA + DATA[:7]
    assert not isinstance(sink, filecopy.RangeSink)
