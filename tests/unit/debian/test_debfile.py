"""A large data.tar.xz is decompressed by an xz process, with the same result as in
this process; a corrupt one is one clear DebError."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from vmbuild import cache
from vmbuild.debian import debfile

BIG = debfile.Identity("big", "1", "all", "http://127.0.0.1:1")
SMALL = BIG._replace(name="small")


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
    debfile.unpack(deb, tmp_path / "by-xz", "big", BIG)
    monkeypatch.setattr(debfile, "XZ_LARGE", 1 << 62)
    debfile.unpack(deb, tmp_path / "in-process", "big", BIG)
    assert (tmp_path / "by-xz").read_bytes() == (tmp_path / "in-process").read_bytes()
    names = [m.name for m in debfile.read_members(tmp_path / "by-xz")]
    assert "usr/share/big/noise" in names and "usr/share/big/link" in names


def test_a_corrupt_data_tar_xz_is_a_deb_error(tmp_path: Path) -> None:
    deb = _deb(tmp_path)
    data = bytearray(deb.read_bytes())
    middle = len(data) - (300 << 10)
    data[middle : middle + 64] = bytes(64)
    deb.write_bytes(bytes(data))
    with pytest.raises(debfile.DebError, match="big"):
        debfile.unpack(deb, tmp_path / "out", "big", BIG)
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out")] == []


def test_an_entry_holds_the_members_control_files_and_dpkg_facts(tmp_path: Path) -> None:
    deb = _deb(tmp_path)
    entry = tmp_path / debfile.entry_name("0" * 64)
    debfile.unpack(deb, entry, "big", BIG)
    assert os.listdir(tmp_path).count(entry.name) == 1  # one file, nothing else left
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    record = debfile.record_of(entry)
    assert (record["package"], record["info"], record["pre_depends"]) == ("big", "big", "")
    assert record["status"]["install ok installed"].startswith(
        "Package: big\nStatus: install ok installed\n"
    )
    control = debfile.read_control_file(entry, "control")
    assert control is not None and control.startswith(b"Package: big\n")
    with open(entry, "rb") as f:
        for m in debfile.read_members(entry):
            if m.name == "usr/share/big/noise":
                f.seek(m.offset)
                noise = f.read(m.size)
        at, size = record["list"]
        f.seek(at)
        listed = f.read(size).decode()
    assert noise == (tmp_path / "root" / "usr" / "share" / "big" / "noise").read_bytes()
    assert listed.splitlines()[:3] == ["/.", "/usr", "/usr/share"]
    assert "/usr/share/big/link" in listed.splitlines()


def test_a_corrupt_small_data_tar_xz_is_a_deb_error(tmp_path: Path) -> None:
    """Under XZ_LARGE: decompressed in this process (liblzma's error, one DebError)."""
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: small\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    )
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "noise").write_bytes(random.Random(2).randbytes(40 << 10))
    deb = tmp_path / "small.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    data = bytearray(deb.read_bytes())
    head = data.index(b"data.tar")
    middle = head + 60 + int(data[head + 48 : head + 58]) // 2
    data[middle : middle + 64] = bytes(64)  # inside the data.tar's compressed stream
    deb.write_bytes(bytes(data))
    with pytest.raises(debfile.DebError, match="small"):
        debfile.unpack(deb, tmp_path / "out", "small", SMALL)
    assert os.listdir(tmp_path) == sorted(os.listdir(tmp_path)) and not (tmp_path / "out").exists()
    assert debfile.control_text(deb, "small").startswith("Package: small\n")


@pytest.mark.parametrize(
    ("expect", "says"),
    [
        (BIG._replace(name="other"), "Package 'big', its entry in the signed index 'other'"),
        (BIG._replace(version="2"), "Version '1', its entry in the signed index '2'"),
        (BIG._replace(architecture="amd64"), "Architecture 'all', its entry .* 'amd64'"),
    ],
)
def test_a_control_file_must_say_what_the_index_says(
    tmp_path: Path, expect: debfile.Identity, says: str
) -> None:
    deb = _deb(tmp_path)
    with pytest.raises(debfile.DebError, match=f"big from http://127.0.0.1:1: .*{says}"):
        debfile.unpack(deb, tmp_path / "out", "big", expect)
    assert [p for p in os.listdir(tmp_path) if p not in ("root", "big.deb")] == []


def test_a_name_outside_debians_rule_is_refused_though_both_say_it() -> None:
    text = "Package: ../x\nVersion: 1\nArchitecture: all\n"
    with pytest.raises(debfile.DebError, match=r"'\.\./x' .* is not a Debian package name"):
        debfile.check_control(text, BIG._replace(name="../x"), "x")


def test_an_entry_found_whole_is_remembered_until_its_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", -(10**9))  # (every file counts as settled)
    entry = tmp_path / debfile.entry_name("0" * 64)
    debfile.unpack(_deb(tmp_path), entry, "big", BIG)
    hashed: list[object] = []
    real = debfile._crc_of

    def counting(f: Any, size: int) -> int:
        hashed.append(f)
        return real(f, size)

    monkeypatch.setattr(debfile, "_crc_of", counting)
    memo = cache.FileMemo("deb-checks-v1")
    assert debfile.is_current(entry, memo) and len(hashed) == 1
    assert debfile.is_current(entry, memo) and len(hashed) == 1  # remembered
    time.sleep(0.05)  # (past the kernel's coarse clock tick: RACY_NS is off here)
    with open(entry, "r+b") as f:  # one byte flipped in place (its ctime moves)
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 1]))
    assert not debfile.is_current(entry, memo) and len(hashed) == 2
