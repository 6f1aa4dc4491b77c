"""The Fetcher: packages downloaded (each checked against its SHA256) and read into
the cache, or with ``read`` false only downloaded until they are asked for."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmbuild import cache
from vmbuild.debian import debfile
from vmbuild.debian.fetch import Fetcher, deb_path, unpacked_path
from vmbuild.debian.http import MirrorError


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    filename: str
    size: int
    sha256: str
    architecture: str = "all"


def _mirror(tmp_path: Path, *names: str) -> tuple[str, list[Pkg]]:
    pool = tmp_path / "mirror" / "pool"
    pool.mkdir(parents=True)
    out = []
    for name in names:
        root = tmp_path / "src" / name
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
        )
        (root / "usr" / "share" / name).mkdir(parents=True)
        (root / "usr" / "share" / name / "file").write_text(name * 100)
        deb = pool / f"{name}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
        data = deb.read_bytes()
        out.append(Pkg(name, "1", f"pool/{name}.deb", len(data), hashlib.sha256(data).hexdigest()))
    return f"file://{tmp_path / 'mirror'}", out


def test_packages_are_read_as_they_arrive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, pkgs = _mirror(tmp_path, "a", "b")
    with Fetcher(mirror) as fetcher:
        for p in pkgs:
            fetcher.start(p)
        got = fetcher.wait(pkgs)
    assert got == {p.name: unpacked_path(p) for p in pkgs}
    names = [m.name for m in debfile.read_members(got["b"])]
    assert "usr/share/b/file" in names


def test_download_only_reads_nothing_until_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, (a, b) = _mirror(tmp_path, "a", "b")
    with Fetcher(mirror, read=False) as fetcher:
        fetcher.start(a)
        fetcher.start(b)
        fetcher.downloaded([a, b])
        assert deb_path(a).is_file() and deb_path(b).is_file()
        assert not unpacked_path(a).exists() and not unpacked_path(b).exists()
        fetcher.wait([a])
        fetcher.wait([a])  # (read once)
    assert unpacked_path(a).is_file() and not unpacked_path(b).exists()
    left = os.listdir(unpacked_path(a).parent)  # (the entries' lock files stay)
    assert [n for n in left if n.startswith(".") and not n.endswith(".lock")] == []


def test_a_package_that_does_not_match_its_hash_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, (a,) = _mirror(tmp_path, "a")
    bad = Pkg(a.name, a.version, a.filename, a.size, "0" * 64)
    with Fetcher(mirror) as fetcher:
        fetcher.start(bad)
        with pytest.raises(MirrorError, match="SHA256"):
            fetcher.wait([bad])
    assert not deb_path(bad).exists() and not unpacked_path(bad).exists()


def _fetch(mirror: str, pkgs: list[Pkg]) -> dict[str, Path]:
    with cache.holding(), Fetcher(mirror) as fetcher:
        return fetcher.wait(pkgs)


@pytest.mark.parametrize("damage", ["flip", "empty", "truncate", "directory"])
def test_a_damaged_entry_is_read_again_from_the_deb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, pkgs = _mirror(tmp_path, "a")
    entry = _fetch(mirror, pkgs)["a"]
    whole = entry.read_bytes()
    if damage == "flip":  # one byte of a file's bytes: the image would change
        data = bytearray(whole)
        data[30] ^= 1
        entry.write_bytes(bytes(data))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "truncate":
        entry.write_bytes(whole[:-1])
    else:
        entry.unlink()
        entry.mkdir()
        (entry / "x").write_text("x")
    assert not debfile.is_current(entry)
    assert _fetch(mirror, pkgs) == {"a": entry}
    assert entry.read_bytes() == whole


def test_a_file_where_the_packages_directory_goes_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "debs").write_text("not a directory")
    mirror, pkgs = _mirror(tmp_path, "a")
    with pytest.raises(cache.CacheError, match="debs is not a directory"):
        _fetch(mirror, pkgs)


def _fetched(pkg: Pkg, mirror: str) -> Path:
    with Fetcher(mirror) as fetcher:
        return fetcher.wait([pkg])[pkg.name]


@pytest.mark.parametrize("kind", ["garbage", "swapped", "link", "short", "directory"])
def test_a_cached_deb_that_is_not_the_package_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """N7: a garbage or swapped ``debs/<sha>.deb`` was used forever (an image with
    another package's files, or the same error on every build)."""
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, (a, b) = _mirror(tmp_path, "a", "b")
    deb = deb_path(a)
    deb.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"v" * a.size)
    if kind == "garbage":
        deb.write_bytes(b"!" * a.size)
    elif kind == "swapped":
        deb.write_bytes((tmp_path / "mirror" / b.filename).read_bytes())
    elif kind == "link":
        deb.symlink_to(victim)
    elif kind == "short":
        deb.write_bytes(b"!")
    else:
        deb.mkdir()
    got = _fetched(a, mirror)
    assert deb.read_bytes() == (tmp_path / "mirror" / a.filename).read_bytes()
    assert [m.name for m in debfile.read_members(got)] == ["usr", "usr/share", "usr/share/a",
                                                          "usr/share/a/file"]  # fmt: skip
    assert victim.read_bytes() == b"v" * a.size


def test_a_checked_deb_is_remembered_by_its_files_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmbuild import cache
    from vmbuild.debian import fetch

    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", -(10**9))  # (every file counts as settled)
    mirror, (a,) = _mirror(tmp_path, "a")
    with Fetcher(mirror, read=False) as fetcher:
        fetcher.start(a)
        fetcher.downloaded([a])
    deb = deb_path(a)
    assert fetch.cached_deb(mirror, a) == deb  # checked: its hash
    hashed: list[object] = []
    real = hashlib.file_digest

    def counting(f: Any, digest: str) -> Any:
        hashed.append(f)
        return real(f, digest)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    assert fetch.cached_deb(mirror, a) == deb
    assert hashed == []  # remembered
    os.chmod(deb, 0o600)  # a change to the file (its ctime): checked again
    assert fetch.cached_deb(mirror, a) == deb
    assert len(hashed) == 1


def test_a_deb_that_cannot_be_read_names_its_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    mirror, (a,) = _mirror(tmp_path, "a")
    junk = b"!<arch>\njunk"
    (tmp_path / "mirror" / a.filename).write_bytes(junk)
    bad = Pkg(a.name, a.version, a.filename, len(junk), hashlib.sha256(junk).hexdigest())
    with pytest.raises(debfile.DebError) as err:
        _fetched(bad, mirror)
    assert "a 1 (pool/a.deb)" in str(err.value)
    assert f"{deb_path(bad)}: delete it" in str(err.value)
