"""The lean tar reader reads what tarfile reads, in every format a .deb's tar may use,
and refuses what is broken."""

from __future__ import annotations

import io
import tarfile

import pytest

from vmbuild.oci import tarread

LONG = "usr/share/" + "a-very-long-directory-name/" * 6 + "file.txt"


def _archive(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:

        def add(name: str, kind: bytes, data: bytes = b"", **kw: object) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.mode, ti.uid, ti.gid = kind, len(data), 0o644, 0, 0
            for key, value in kw.items():
                setattr(ti, key, value)
            tar.addfile(ti, io.BytesIO(data) if data else None)

        add("./", tarfile.DIRTYPE, mode=0o755)
        add("./usr/bin/app", tarfile.REGTYPE, b"#!/bin/sh\n" * 100, mode=0o755, uid=7, gid=8)
        add("./" + LONG, tarfile.REGTYPE, b"x" * 513)
        add("./usr/bin/empty", tarfile.REGTYPE)
        add("./usr/bin/ln", tarfile.LNKTYPE, linkname="./usr/bin/app")
        add("./usr/lib/link", tarfile.SYMTYPE, linkname="../" + LONG)
        add("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("./run/fifo", tarfile.FIFOTYPE)
        add("./big-ids", tarfile.REGTYPE, b"y", uid=3_000_000, gid=2)
    return buf.getvalue()


def _by_tarfile(data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for ti in tar:
            body = tar.extractfile(ti).read() if ti.isreg() else b""  # type: ignore[union-attr]
            major, minor = (ti.devmajor, ti.devminor) if ti.ischr() or ti.isblk() else (0, 0)
            row = (ti.name, ti.mode, ti.uid, ti.gid, ti.linkname, major, minor, body)
            out.append(row)
    return out


def _by_reader(data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    reader = tarread.TarReader(io.BytesIO(data))
    for h in reader:
        body = io.BytesIO()
        if h.isreg:
            reader.copy_data(body)
        name = h.name.rstrip("/") if h.type == tarread.DIR and h.name != "./" else h.name
        out.append(
            (name, h.mode, h.uid, h.gid, h.linkname, h.devmajor, h.devminor, body.getvalue())
        )
    return out


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_every_format_reads_as_tarfile_reads_it(fmt: int) -> None:
    if fmt == tarfile.USTAR_FORMAT:  # no long link names nor 3,000,000 in ustar
        data = _archive(tarfile.GNU_FORMAT)
        with tarfile.open(fileobj=io.BytesIO(data)) as src:
            members = [m for m in src.getmembers() if len(m.linkname) < 100 and m.uid < 8**7]
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
                for m in members:
                    tar.addfile(m, src.extractfile(m) if m.isreg() else None)
        data = buf.getvalue()
    else:
        data = _archive(fmt)
    got, want = _by_reader(data), _by_tarfile(data)
    assert [g[0] for g in got] == [w[0] if w[0] != "." else "./" for w in want]
    assert [g[1:] for g in got] == [w[1:] for w in want]
    assert any(g[0] == "./" + LONG for g in got)


def test_data_left_unread_is_skipped() -> None:
    names = [h.name for h in tarread.TarReader(io.BytesIO(_archive(tarfile.GNU_FORMAT)))]
    assert names[-1] == "./big-ids" and "./usr/bin/empty" in names


def test_a_bad_checksum_is_refused() -> None:
    data = bytearray(_archive(tarfile.GNU_FORMAT))
    data[512 + 10] ^= 0x01  # the second header's name
    with pytest.raises(tarread.TarError, match="checksum"):
        list(tarread.TarReader(io.BytesIO(bytes(data))))


def test_a_truncated_stream_is_refused() -> None:
    data = _archive(tarfile.GNU_FORMAT)
    reader = tarread.TarReader(io.BytesIO(data[:1000]))
    with pytest.raises(tarread.TarError, match="truncated"):
        for h in reader:
            if h.isreg:
                reader.copy_data(io.BytesIO())


def test_a_sparse_member_is_refused() -> None:
    head = bytearray(tarfile.TarInfo("./x").tobuf(tarfile.GNU_FORMAT))
    head[156:157] = b"S"
    head[148:156] = b" " * 8
    head[148:155] = b"%06o\0" % sum(head)
    with pytest.raises(tarread.TarError, match=r"type b'S'"):
        list(tarread.TarReader(io.BytesIO(bytes(head) + bytes(1024))))


def _header(name: str, kind: bytes, size_field: bytes) -> bytes:
    """One GNU header for ``name`` of type ``kind`` whose size field is ``size_field``
    (12 bytes), with a right checksum."""
    head = bytearray(tarfile.TarInfo(name).tobuf(tarfile.GNU_FORMAT))
    head[156:157] = kind
    head[124:136] = size_field
    head[148:156] = b" " * 8
    head[148:155] = b"%06o\0" % sum(head)
    return bytes(head)


@pytest.mark.parametrize(
    "size_field",
    [
        b"\xff" * 12,  # base-256, negative
        b"-0000000017\0",  # octal text with a sign (int() would take it)
        b"00_00000017\0",  # and with an underscore
    ],
)
@pytest.mark.parametrize("kind", [b"0", b"L", b"x"])
def test_a_negative_or_malformed_size_is_refused(size_field: bytes, kind: bytes) -> None:
    data = _header("./x", kind, size_field) + bytes(4096)
    with pytest.raises(tarread.TarError, match="number"):
        list(tarread.TarReader(io.BytesIO(data)))


def test_a_huge_header_record_is_refused_before_it_is_read() -> None:
    size = b"%011o\0" % (tarread.MAX_RECORD + 1)
    data = _header("././@LongLink", b"L", size) + bytes(1024)
    with pytest.raises(tarread.TarError, match="-byte 'L' record"):
        list(tarread.TarReader(io.BytesIO(data)))


def test_a_pax_size_that_is_not_a_plain_number_is_refused() -> None:
    record = b" size=-5\n"
    record = b"%d%s" % (len(record) + 2, record)
    pax = _header("./PaxHeaders/x", b"x", b"%011o\0" % len(record))
    pax += record + bytes(-len(record) % 512)
    data = pax + _header("./x", b"0", b"%011o\0" % 0) + bytes(1024)
    with pytest.raises(tarread.TarError, match="bad pax size"):
        list(tarread.TarReader(io.BytesIO(data)))
