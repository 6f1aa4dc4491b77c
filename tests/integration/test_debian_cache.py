"""The Debian packages' cache entries through the CLI: a damaged entry is read again
from its .deb (the image unchanged), and a file where the cache keeps the packages is
one line (probes s4d-flip-unpacked, s4d-empty-unpacked, s4d-dir-unpacked,
s4d-debs-file)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, serve, write_repo
from tests.support.cli import vmbuild_cli, write_spec

PACKAGES = [
    Pkg("lib", files={"usr/lib/lib.so": b"\x7fELF not really\n" * 100}),
    Pkg("app", fields={"Depends": "lib"}, files={"usr/bin/app": b"#!/bin/sh\necho app\n"}),
]


@pytest.fixture(scope="module")
def spec_text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("aptrepo")
    (root / "build").mkdir()
    keys = Keys(root / "gnupg")
    write_repo(root / "www", [build_deb(p, root / "build") for p in PACKAGES], keys)
    with serve(root / "www") as url:
        yield (
            'function = "buildLayeredImage"\nname = "t"\ntag = "1"\n'
            'contents = [{ deb = "app" }]\n'
            f'[debian]\nmirror = "{url}"\nsuite = "{SUITE}"\nkeyring = "{keys.keyring}"\n'
        )


def _build(tmp: Path, out: str) -> tuple[int, str]:
    spec = tmp / "spec.toml"
    args = ("build", spec, "--compress", "none", "--out", tmp / out)
    proc = vmbuild_cli(*args, env={"VMBUILD_CACHE_DIR": str(tmp / "cache")})
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("damage", ["flip", "empty", "directory"])
def test_a_damaged_unpacked_entry_is_read_again(
    spec_text: str, tmp_path: Path, damage: str
) -> None:
    write_spec(tmp_path, spec_text)
    assert _build(tmp_path, "a.tar")[0] == 0
    entries = sorted((tmp_path / "cache" / "debs" / "unpacked").glob("[!.]*"))
    assert len(entries) == len(PACKAGES)
    for entry in entries:
        if damage == "flip":  # one byte of a file's bytes (as the probe flipped)
            data = bytearray(entry.read_bytes())
            data[30] ^= 0x20
            entry.write_bytes(bytes(data))
        elif damage == "empty":
            entry.write_bytes(b"")
        else:
            entry.unlink()
            entry.mkdir()
    code, err = _build(tmp_path, "b.tar")
    assert code == 0, err
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert all(e.is_file() for e in entries)


def test_a_file_where_the_cache_keeps_the_packages_is_one_line(
    spec_text: str, tmp_path: Path
) -> None:
    write_spec(tmp_path, spec_text)
    assert _build(tmp_path, "a.tar")[0] == 0  # (the lock made)
    shutil.rmtree(tmp_path / "cache" / "debs")
    (tmp_path / "cache" / "debs").write_text("not a directory")
    code, err = _build(tmp_path, "b.tar")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("vmbuild: error: the cache directory ")
    assert "debs is not a directory -- remove it" in err
    assert not (tmp_path / "b.tar").exists()
