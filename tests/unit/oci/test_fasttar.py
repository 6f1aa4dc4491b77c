"""fasttar writes the very bytes tarfile writes, and its headers predict them exactly."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from vmbuild.oci import fasttar

TYPES = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
)
NAME_PARTS = ("usr", "lib", "x86_64-linux-gnu", "libc.so.6", "é", "a" * 60, "日本", "b c")


def random_info(rng: random.Random) -> tarfile.TarInfo:
    kind = rng.choice(TYPES)
    name = "/".join(rng.choice(NAME_PARTS) for _ in range(rng.randint(1, 4)))
    ti = tarfile.TarInfo(name + ("/" if kind == tarfile.DIRTYPE and rng.random() < 0.5 else ""))
    ti.type = kind
    ti.mode = rng.choice((0o644, 0o755, 0o4711, 0o777, 0o1777))
    ti.mtime = rng.choice((0, 1, 1_700_000_000, 8**11 - 1, 8**11))
    ti.uid = rng.choice((0, 1000, 65534, 8**7 - 1, 8**7, 2**31))
    ti.gid = rng.choice((0, 100, 8**7))
    ti.uname = rng.choice(("", "root", "u" * 32, "u" * 33, "ünï"))
    ti.gname = rng.choice(("", "root", "wheel"))
    if kind == tarfile.REGTYPE:
        ti.size = rng.choice((0, 1, 511, 512, 513, 10_000, (1 << 20) + 700))
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        ti.linkname = "/".join(rng.choice(NAME_PARTS) for _ in range(rng.randint(1, 3)))
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        ti.devmajor, ti.devminor = rng.randint(0, 300), rng.randint(0, 300)
    if rng.random() < 0.2:
        ti.pax_headers = {"SCHILY.xattr.user.k": rng.choice(("v", "ü" * 40))}
    return ti


def tar_of(infos: list[tarfile.TarInfo], fast: bool, data: bytes) -> bytes:
    """The archive tarfile writes, or (``fast``) headers, data and padding joined."""
    if fast:
        parts = []
        for ti in infos:
            size = ti.size if ti.isreg() else 0
            parts += [fasttar.member_header(ti), data[:size], bytes(-size % 512)]
        body = b"".join(parts) + bytes(1024)
        return body + bytes(-len(body) % tarfile.RECORDSIZE)
    out = io.BytesIO()
    with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti in infos:
            tar.addfile(ti, io.BytesIO(data[: ti.size]) if ti.isreg() else None)
    return out.getvalue()


@pytest.mark.parametrize("seed", range(16))
def test_same_bytes_as_tarfile(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes((1 << 20) + 1000)
    infos = [random_info(rng) for _ in range(60)]
    expected = tar_of(infos, False, data)
    assert tar_of(infos, True, data) == expected
    # member_header + data + padding, member by member, is the archive
    predicted = sum(
        len(fasttar.member_header(ti)) + ti.size + (-ti.size % 512) if ti.isreg() else 0
        for ti in infos
    )
    predicted += sum(len(fasttar.member_header(ti)) for ti in infos if not ti.isreg())
    predicted += 1024
    predicted += -predicted % tarfile.RECORDSIZE
    assert predicted == len(expected)
