"""Debian downloads through the CLI, against a signed repository on 127.0.0.1 whose
``.deb`` files a test serves slowly, endlessly or whole: Ctrl-C and SIGTERM stop a
build at once and leave nothing behind (N3), a body past its signed size is one line
(N3), parallel builds sharing one cold cache all succeed (N1), and a Release of
another suite or past its Valid-Until is refused (N13)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, write_repo
from tests.support.cli import REPO, vmbuild_cli, write_spec
from tests.support.slowmirror import Behaviour, serve

PACKAGES = [Pkg(f"p{i}", files={f"usr/share/p{i}/data": os.urandom(300)}) for i in range(4)]
Repo = tuple[str, Behaviour, Keys]


def _resign(root: Path, keys: Keys, old: bytes, new: bytes) -> None:
    dist = root / "dists" / SUITE
    release = (dist / "Release").read_bytes()
    assert old in release
    release = release.replace(old, new)
    (dist / "Release").write_bytes(release)
    (dist / "InRelease").write_bytes(keys.clearsign(release))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    """(base URL, how .debs are served, keys): ``good/``, ``expired/`` (Valid-Until
    in 2015) and ``oldsuite/`` (Suite: oldstable, Codename: bookworm), all signed."""
    root = tmp_path_factory.mktemp("aptrepo")
    build = root / "build"
    build.mkdir()
    keys = Keys(root / "gnupg")
    write_repo(root / "www" / "good", [build_deb(p, build) for p in PACKAGES], keys)
    for bad in ("expired", "oldsuite"):
        shutil.copytree(root / "www" / "good", root / "www" / bad)
    date = b"Date: Tue, 01 Dec 2026 00:00:00 UTC\n"
    expired = date + b"Valid-Until: Thu, 01 Jan 2015 00:00:00 UTC\n"
    _resign(root / "www" / "expired", keys, date, expired)
    named = f"Suite: {SUITE}\nCodename: {SUITE}".encode()
    _resign(root / "www" / "oldsuite", keys, named, b"Suite: oldstable\nCodename: bookworm")
    behaviour = Behaviour()
    with serve(root / "www", behaviour) as url:
        yield url, behaviour, keys


@pytest.fixture
def whole(repo: Repo) -> Iterator[Repo]:
    """The repository, its .debs served as the test sets, whole again afterwards."""
    yield repo
    repo[1].mode, repo[1].suffix = "whole", ".deb"
    repo[1].started.clear()
    repo[1].go.set()


def _spec(tmp: Path, repo: Repo, names: list[str], where: str = "good", extra: str = "") -> Path:
    url, _, keys = repo
    contents = ", ".join(f'{{ deb = "{n}" }}' for n in names)
    return write_spec(
        tmp,
        f'function = "buildLayeredImage"\nname = "t"\ncontents = [{contents}]\n'
        f'[debian]\nmirror = "{url}/{where}"\nsuite = "{SUITE}"\nkeyring = "{keys.keyring}"\n'
        + extra,
    )


def _env(tmp: Path) -> dict[str, str]:
    (tmp / "tmp").mkdir(exist_ok=True)
    return {"VMBUILD_CACHE_DIR": str(tmp / "cache"), "TMPDIR": str(tmp / "tmp")}


def _build(spec: Path, out: Path) -> list[str]:
    """A real ``python -m vmbuild build`` (what only a process shows: signals, races)."""
    return [sys.executable, "-m", "vmbuild", "build", str(spec), "--compress", "none",
            "--out", str(out)]  # fmt: skip


def _leftovers(tmp: Path) -> list[str]:
    debs = tmp / "cache" / "debs"
    parts = [n for n in os.listdir(debs) if n.endswith(".part")] if debs.is_dir() else []
    return parts + [n for n in os.listdir(tmp / "tmp") if "vmbuild" in n]


def _one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("vmbuild: error: "), proc.stderr
    for word in words:
        assert word in line, line
    return line


def _interrupt(argv: list[str], tmp: Path, behaviour: Behaviour, signo: int) -> tuple[int, str]:
    """Run ``argv``, send ``signo`` once the slow transfer has begun: (status, stderr),
    after checking that it ended within 2 s."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **_env(tmp)},
        cwd=REPO,
    )
    try:
        assert behaviour.started.wait(30), "the download never started"
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signo)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert took < 2, f"took {took:.1f} s"
    assert "Traceback" not in err, err
    return proc.returncode, err


@pytest.mark.parametrize(("signo", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_build_downloading_from_a_slow_mirror(
    whole: Repo, tmp_path: Path, signo: int, status: int
) -> None:
    """N3: with a mirror sending 5 bytes a second, the build exited only once the
    download ended (50 s to minutes later)."""
    _, behaviour, _ = whole
    spec = _spec(tmp_path, whole, ["p0"])
    assert vmbuild_cli("lock", spec, env=_env(tmp_path)).returncode == 0
    behaviour.mode, behaviour.rate = "drip", 5
    code, err = _interrupt(_build(spec, tmp_path / "o.tar"), tmp_path, behaviour, signo)
    said = "interrupted" if signo == signal.SIGINT else "stopped by SIGTERM; cleaned up"
    assert (code, err.strip().splitlines()) == (
        status,
        ["fetching Debian packages", f"vmbuild: {said}"],
    ), err
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "o.tar").exists()


def test_ctrl_c_stops_a_lock_reading_a_slow_index(whole: Repo, tmp_path: Path) -> None:
    """The index's reading thread was joined while blocked on the mirror."""
    _, behaviour, _ = whole
    spec = _spec(tmp_path, whole, ["p0"])
    behaviour.mode, behaviour.rate, behaviour.suffix = "drip", 5, "Packages.gz"
    argv = [sys.executable, "-m", "vmbuild", "lock", str(spec)]
    code, err = _interrupt(argv, tmp_path, behaviour, signal.SIGINT)
    assert (code, err.strip().splitlines()[-1]) == (130, "vmbuild: interrupted"), err
    assert not spec.with_name(spec.name + ".lock").exists()
    assert [n for n in os.listdir(tmp_path / "cache" / "debian" / "index") if n] == []


def test_an_endless_deb_stops_at_its_size(whole: Repo, tmp_path: Path) -> None:
    """N3: an endless body grew the part file at 250 MB/s until the disk was full."""
    _, behaviour, _ = whole
    spec = _spec(tmp_path, whole, ["p1"])
    behaviour.mode = "endless"
    began = time.monotonic()
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "o.tar", env=_env(tmp_path))
    assert time.monotonic() - began < 30
    _one_line(proc, "p1_1.0_amd64.deb is larger than the", "bytes its index gives")
    assert _leftovers(tmp_path) == []


def test_parallel_builds_share_one_cold_cache(whole: Repo, tmp_path: Path) -> None:
    """N1: four builds at once on one cold cache lost one to four of them (a
    FileNotFoundError on the shared .part, or a false SHA256 mismatch)."""
    names = [p.name for p in PACKAGES]
    spec = _spec(tmp_path, whole, names)
    env = {**os.environ, **_env(tmp_path)}
    assert vmbuild_cli("lock", spec, env=_env(tmp_path)).returncode == 0
    shutil.rmtree(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            _build(spec, tmp_path / f"o{k}.tar"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for k in range(4)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    outs = {(tmp_path / f"o{k}.tar").read_bytes() for k in range(4)}
    assert len(outs) == 1
    assert _leftovers(tmp_path) == []


def test_a_release_of_another_suite_is_refused(whole: Repo, tmp_path: Path) -> None:
    """N13: a signed Release saying Suite: oldstable, served as testing, was used."""
    spec = _spec(tmp_path, whole, ["p0"], "oldsuite")
    proc = vmbuild_cli("lock", spec, env=_env(tmp_path))
    _one_line(proc, "the Release of oldstable / bookworm, not of testing")
    assert not spec.with_name(spec.name + ".lock").exists()


def test_an_expired_release_is_refused_unless_the_spec_says(whole: Repo, tmp_path: Path) -> None:
    """N13: a signed InRelease past its Valid-Until (2015) was used."""
    spec = _spec(tmp_path, whole, ["p0"], "expired")
    line = _one_line(vmbuild_cli("lock", spec, env=_env(tmp_path)), "expired on")
    assert re.search(r"checkValidUntil = false", line)
    spec = _spec(tmp_path, whole, ["p0"], "expired", "checkValidUntil = false\n")
    proc = vmbuild_cli("lock", spec, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_a_corrupt_or_linked_cache_entry_is_fetched_again(whole: Repo, tmp_path: Path) -> None:
    """N7/N5 through the CLI: a garbage cached .deb failed every build ('truncated ar
    member header'); a linked .deb.part had its target overwritten."""
    spec = _spec(tmp_path, whole, ["p2", "p3"])
    env = _env(tmp_path)
    first = vmbuild_cli("build", spec, "--compress", "none", "--out", tmp_path / "a.tar", env=env)
    assert first.returncode == 0, first.stderr
    lock = json.loads(spec.with_name(spec.name + ".lock").read_text())
    shas = {p["name"]: p["sha256"] for p in lock["packages"]}
    debs = tmp_path / "cache" / "debs"
    shutil.rmtree(debs / "unpacked")
    (debs / f"{shas['p2']}.deb").write_bytes(b"!" * 600)  # garbage
    (debs / f"{shas['p3']}.deb").unlink()
    victim = tmp_path / "victim"
    victim.write_text("VICTIM\n")
    (debs / f"{shas['p3']}.deb.part").symlink_to(victim)
    proc = vmbuild_cli("build", spec, "--compress", "none", "--out", tmp_path / "b.tar", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert victim.read_text() == "VICTIM\n"


@pytest.mark.parametrize(("size", "why"), [("1e999", "Size inf"), ("-5", "Size -5")])
def test_a_lock_with_a_bad_size_is_one_line(
    whole: Repo, tmp_path: Path, size: str, why: str
) -> None:
    """N15 (s3-sizeinf, s3-sizeneg): an OverflowError and a FileNotFoundError."""
    spec = _spec(tmp_path, whole, ["p0"])
    env = _env(tmp_path)
    assert vmbuild_cli("lock", spec, env=env).returncode == 0
    lock = spec.with_name(spec.name + ".lock")
    lock.write_text(re.sub(r'"size": \d+', f'"size": {size}', lock.read_text()))
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "o.tar", env=env)
    _one_line(proc, "is malformed", why)
