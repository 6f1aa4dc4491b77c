"""A large data.tar.xz is decompressed by an xz process, with the same result as in
this process; a corrupt one is one clear DebError."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from vmbuild.debian import debfile


def _deb(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: big\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    (root / "usr" / "share" / "big").mkdir(parents=True)
    noise = random.Random(1).randbytes(600 << 10)  # does not compress: over XZ_LARGE
    (root / "usr" / "share" / "big" / "noise").write_bytes(noise)
    (root / "usr" / "share" / "big" / "link").symlink_to("noise")
    deb = tmp_path / "big.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def test_xz_process_reads_as_this_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deb = _deb(tmp_path)
    debfile.unpack(deb, tmp_path / "by-xz", "big")
    monkeypatch.setattr(debfile, "XZ_LARGE", 1 << 62)
    debfile.unpack(deb, tmp_path / "in-process", "big")
    for name in ("payload", "members.json", "control/control"):
        assert (tmp_path / "by-xz" / name).read_bytes() == (
            tmp_path / "in-process" / name
        ).read_bytes()
    names = [m.name for m in debfile.read_members(tmp_path / "by-xz")]
    assert "usr/share/big/noise" in names and "usr/share/big/link" in names


def test_a_corrupt_data_tar_xz_is_a_deb_error(tmp_path: Path) -> None:
    deb = _deb(tmp_path)
    data = bytearray(deb.read_bytes())
    middle = len(data) - (300 << 10)
    data[middle : middle + 64] = bytes(64)
    deb.write_bytes(bytes(data))
    with pytest.raises(debfile.DebError, match="big"):
        debfile.unpack(deb, tmp_path / "out", "big")
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out")] == []
