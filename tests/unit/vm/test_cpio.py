"""The initramfs writer: deterministic newc archives the kernel (and cpio) can read."""

from __future__ import annotations

import io
import stat

import pytest

from vmbuild.vm import cpio


def members(data: bytes) -> list[tuple[str, int, bytes]]:
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while True:
        head = data[pos : pos + 110]
        assert head[:6] == cpio.MAGIC
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == cpio.TRAILER:
            assert pos == len(data)
            return out
        out.append((name, mode, body))


def archive(entries: list[cpio.Entry]) -> bytes:
    buf = io.BytesIO()
    cpio.write(buf, entries)
    return buf.getvalue()


ENTRIES = [
    cpio.Entry.dir("bin"),
    cpio.Entry.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755),
    cpio.Entry.symlink("bin/sh", "busybox"),
    cpio.Entry.chardev("dev/console", 5, 1),
]


def test_members_round_trip() -> None:
    got = members(archive(ENTRIES))
    assert [n for n, _, _ in got] == ["bin", "bin/hello", "bin/sh", "dev/console"]
    assert stat.S_ISDIR(got[0][1]) and got[1][1] == stat.S_IFREG | 0o755
    assert got[1][2] == b"#!/bin/sh\necho hi\n"
    assert stat.S_ISLNK(got[2][1]) and got[2][2] == b"busybox"
    assert stat.S_ISCHR(got[3][1]) and got[3][2] == b""


def test_same_entries_same_bytes() -> None:
    assert archive(ENTRIES) == archive(list(ENTRIES))


def test_device_numbers_are_recorded() -> None:
    head = archive([cpio.Entry.chardev("dev/null", 1, 3)])[:110]
    rmajor, rminor = int(head[78:86], 16), int(head[86:94], 16)
    assert (rmajor, rminor) == (1, 3)


def test_absolute_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="relative"):
        archive([cpio.Entry.file("/etc/passwd", b"")])
