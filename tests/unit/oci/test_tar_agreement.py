"""Every reader of an untrusted tar gives one verdict on the same bytes: a base layer's
check (layercheck), a pulled layer's scan as it streams (layerscan, fed in small
pieces) and a .deb's data (debfile). Structure cases go through all three; name cases
through the two layer callers (a .deb's names have dpkg's rules: debfile's own)."""

from __future__ import annotations

import functools
import io
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from tests.support.crafted import tar_bytes
from vmbuild.debian import debfile
from vmbuild.errors import ImageError
from vmbuild.oci import tarread
from vmbuild.oci.layercheck import check_layer
from vmbuild.registry.layerscan import LayerScan

Case = tuple[str, bytes, str | None]  # (id, tar, a phrase of the refusal or None: fine)


def _block(
    name: str,
    kind: bytes = b"0",
    size: bytes | None = None,
    *,
    data: bytes = b"",
    fmt: Literal[0, 1, 2] = tarfile.GNU_FORMAT,
    at: dict[int, bytes] | None = None,
) -> bytes:
    """One header (``size`` replaces its size field, ``at`` any bytes), with a right
    checksum, then ``data`` padded."""
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    head = bytearray(ti.tobuf(fmt)[-512:])
    head[156:157] = kind
    if size is not None:
        head[124:136] = size
    for offset, raw in (at or {}).items():
        head[offset : offset + len(raw)] = raw
    head[148:156] = b" " * 8
    head[148:155] = b"%06o\0" % sum(head)
    return bytes(head) + data + bytes(-len(data) % 512)


def _record(kind: bytes, body: bytes, name: str = "././@LongLink") -> bytes:
    return _block(name, kind, b"%011o\0" % len(body), data=body)


def _pax(**records: str) -> bytes:
    out = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode()
        n = len(text) + len(str(len(text)))
        n += len(str(n)) - len(str(len(text)))
        out += str(n).encode() + text
    return out


END = bytes(1024)
COMMENT = _pax(comment="c")
FILE = _block("./usr/bin/x", data=b"hello")
GOOD = tar_bytes([("etc", "d", ""), ("etc/a", "f", "a" * 700), ("etc/l", "l", "a")])

STRUCTURE: list[Case] = [
    ("good", GOOD, None),
    ("gnu", FILE + _record(b"L", b"./usr/" + b"long/" * 30 + b"x\0") + FILE + END, None),
    ("empty", b"", "it is empty"),
    ("only end blocks", END, None),
    ("no end blocks", FILE, None),
    ("junk after the end", FILE + END + b"junk" * 300, None),
    ("garbage", b"not a tar at all" * 100, "not a readable tar"),
    ("bad checksum", FILE + FILE[:10] + b"y" + FILE[11:] + END, "bad checksum"),
    ("cut in data", FILE[:600], "truncated"),
    ("cut in a header", FILE + FILE[:300], "truncated"),
    ("negative size", _block("./x", size=b"\xff" * 12) + END, "bad number"),
    ("signed octal", _block("./x", size=b"-0000000017\0") + END, "bad number"),
    ("underscore", _block("./x", size=b"00_00000017\0") + END, "bad number"),
    ("other base-256", _block("./x", size=b"\x81" + bytes(11)) + END, "bad number"),
    ("huge long name", _block("././@LongLink", b"L", b"%011o\0" % (2 << 20)) + END, "record"),
    ("pax size", _record(b"x", _pax(size="-5")) + FILE + END, "bad pax size"),
    ("pax no newline", _record(b"x", b"9 path=a\0") + FILE + END, "malformed pax"),
    ("pax sparse", _record(b"x", _pax(**{"GNU.sparse.major": "1"})) + FILE + END, "sparse"),
    ("sparse type", _block("./x", b"S") + END, "unsupported type"),
    ("unknown type", _block("./x", b"V") + END, "unsupported type"),
    ("two pax", _record(b"x", _pax(path="a")) * 2 + FILE + END, "two 'x'"),
    ("two long names", _record(b"L", b"a") * 2 + FILE + END, "two 'L'"),
    ("pax and long", _record(b"x", _pax(path="a")) + _record(b"L", b"b") + FILE + END, "both"),
    ("global path", _record(b"g", _pax(path="../../x")) + FILE + END, "global"),
    ("gnu prefix", _block("x", at={345: b"../../etc"}) + END, "prefix"),
    ("old dir data", _block("./d/", b"\0", data=b"x" * 600) + END, "with data"),
    ("long name at the end", FILE + _record(b"L", b"a"), "truncated"),
    (
        "long name past its size",
        _block("././@LongLink", b"L", b"%011o\0" % 2, data=b"a/../../x") + FILE + END,
        "bytes after the end",
    ),
    (
        "pax in the padding",
        _block("pax", b"x", b"%011o\0" % len(COMMENT), data=COMMENT + _pax(path="../x"))
        + FILE
        + END,
        "bytes after the end",
    ),
    ("pax before the end", FILE + _record(b"x", _pax(path="a")) + END, "no member after"),
    ("global before the end", FILE + _record(b"g", _pax(comment="c")) + END, "no member after"),
    ("global comment", _record(b"g", _pax(comment="c")) + FILE + END, None),
    ("bad mtime", _block("./x", at={136: b"zzzzzzzzzzz\0"}) + END, "bad number"),
    ("bad devmajor", _block("./x", at={329: b"-1\0"}) + END, "bad number"),
    (
        "old dir by its header",
        _record(b"L", b"x") + _block("d/", b"\0", data=b"y" * 600) + END,
        "one of its names",
    ),
    ("old dir by its long name", _record(b"L", b"d/") + _block("x", b"\0") + END, "one of"),
    ("old dir by both", _record(b"L", b"d/") + _block("d/", b"\0") + END, None),
]

NAMES: list[Case] = [
    ("dotdot", tar_bytes([("ok", "f", "1"), ("a/../../x", "f", "")]), "climbs out"),
    ("absolute", tar_bytes([("/etc/passwd", "f", "")]), "absolute"),
    ("pax path", _record(b"x", _pax(path="../../evil")) + _block("harmless") + END, "climbs"),
    ("long name", _record(b"L", b"d/" * 60 + b"../" * 70 + b"x") + FILE + END, "climbs out"),
    ("symlink out", tar_bytes([("a/b", "l", "../../x")]), "points outside"),
    ("dangling hard link", tar_bytes([("a", "h", "nothere")]), "has no target"),
    ("hard link to a dir", tar_bytes([("d", "d", ""), ("a", "h", "d")]), "has no target"),
    ("hard link later", tar_bytes([("a", "h", "b"), ("b", "f", "")]), None),
    ("whiteout up", tar_bytes([("d/.wh...", "f", "")]), "climbs out"),
    ("ustar prefix", _block("x", fmt=tarfile.USTAR_FORMAT, at={345: b"../.."}) + END, "climbs"),
]


def base(data: bytes, tmp_path: Path) -> None:
    check_layer(io.BytesIO(data), "none", "layer 1")


def pulled(data: bytes, tmp_path: Path) -> None:
    scan = LayerScan("layer 1")
    for i in range(0, len(data), 7):
        scan.feed(data[i : i + 7])
    problem = scan.finish()
    if problem is not None:
        raise problem


def deb(data: bytes, tmp_path: Path) -> None:
    control = _block("./control", data=b"Package: p\nVersion: 1\nArchitecture: all\n") + END
    parts = [(b"debian-binary", b"2.0\n"), (b"control.tar", control), (b"data.tar", data)]
    out = bytearray(b"!<arch>\n")
    for name, body in parts:
        out += b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, b"100644", len(body))
        out += body + b"\n" * (len(body) & 1)
    path = tmp_path / "p.deb"
    path.write_bytes(bytes(out))
    expect = debfile.Identity("p", "1", "all", "http://127.0.0.1:1")
    debfile.unpack(path, tmp_path / "entry", "p.deb", expect)


Caller = Callable[[bytes, Path], None]


def _verdict(call: Caller, data: bytes, tmp_path: Path) -> str | None:
    try:
        call(data, tmp_path)
    except ImageError as exc:
        return exc.message
    return None


@pytest.mark.parametrize(
    ("data", "refusal"), [c[1:] for c in STRUCTURE], ids=[c[0] for c in STRUCTURE]
)
@pytest.mark.parametrize("call", [base, pulled, deb])
def test_structure_has_one_verdict(
    call: Caller, data: bytes, refusal: str | None, tmp_path: Path
) -> None:
    got = _verdict(call, data, tmp_path)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and refusal in got, got
        assert "\n" not in got


@pytest.mark.parametrize(("data", "refusal"), [c[1:] for c in NAMES], ids=[c[0] for c in NAMES])
@pytest.mark.parametrize("call", [base, pulled])
def test_names_have_one_verdict(
    call: Caller, data: bytes, refusal: str | None, tmp_path: Path
) -> None:
    got = _verdict(call, data, tmp_path)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and refusal in got and got.startswith("layer 1: "), got


def test_what_tarfile_reads_is_what_the_reader_reads() -> None:
    """Where the reader accepts, its names are tarfile's (the base layers' later reader)."""
    for _, data, refusal in STRUCTURE + NAMES:
        if refusal is not None or not data:
            continue
        ours = [h.name for h in tarread.TarReader(io.BytesIO(data))]
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            theirs = [m.name for m in tar]
        assert [n.rstrip("/") for n in ours] == theirs


def _random_tar(rnd: random.Random) -> bytes:
    """Up to five headers of any kind, names, sizes, magic and prefix, mostly sound."""
    out = b""
    names = ["a", "d/", "x/y", "../e", "", "./", "b" * 120]
    for _ in range(rnd.randint(0, 5)):
        kind = rnd.choice([b"0", b"\0", b"5", b"1", b"2", b"7", b"L", b"K", b"x", b"g"])
        if kind in (b"L", b"K"):
            body = rnd.choice(names).encode() + rnd.choice([b"", b"\0", b"\0zz"])
        elif kind in (b"x", b"g"):
            keys, values = ["path", "linkpath", "size", "comment", "uid"], ["p/", "q", "5", "-1"]
            body = _pax(**{rnd.choice(keys): rnd.choice(values) for _ in range(rnd.randint(0, 3))})
        else:
            body = rnd.choice([b"", b"z" * 5, b"z" * 600])
        size = len(body) if rnd.random() < 0.85 else rnd.choice([0, 1, 600])
        extra = b"" if rnd.random() < 0.85 else rnd.choice([b"junk", b"11 path=q\n"])
        at = {257: rnd.choice([b"ustar\x0000", b"ustar\x0000", b"ustar  \0", bytes(8)])}
        if rnd.random() < 0.2:
            at[345] = rnd.choice([b"pre", b"../.."])
        out += _block(rnd.choice(names), kind, b"%011o\0" % size, data=body + extra, at=at)
    return out + (END if rnd.random() < 0.7 else b"")


def _pulled(data: bytes) -> list[tarread.Header]:
    return list(tarread.TarReader(io.BytesIO(data)))


def _pushed(data: bytes, step: int) -> list[tarread.Header]:
    got: list[tarread.Header] = []
    scan = tarread.TarScan(got.append)
    for i in range(0, len(data), step):
        scan.feed(data[i : i + step])
    scan.finish()
    return got


def _members(read: Callable[[], list[tarread.Header]]) -> list[tuple[object, ...]] | str:
    try:
        return [(h.name.rstrip("/"), h.isreg, h.linkname, h.size * h.isreg) for h in read()]
    except tarread.TarError:
        return "refused"


def test_random_tars_read_alike() -> None:
    """Both front ends read any tar alike, and where they accept it, tarfile reads the
    same members: names, regular or not, link targets, sizes."""
    rnd = random.Random(2026)
    accepted = 0
    for _ in range(2000):
        data, step = _random_tar(rnd), rnd.choice([1, 13, 512, 4096])
        pulled = _members(functools.partial(_pulled, data))
        assert _members(functools.partial(_pushed, data, step)) == pulled
        if pulled == "refused":
            continue
        accepted += 1
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            theirs = [(m.name.rstrip("/"), m.isreg(), m.linkname, m.size * m.isreg()) for m in tar]
        assert theirs == pulled
    assert accepted > 300  # the cases reach past the parser's refusals
