"""Concurrency as CI uses it: parallel Debian builds sharing one cache directory, cold
and warm, with ``vmbuild cache prune`` running beside them. Every build either succeeds
with the bytes a serial build gives, or fails with one line; never a traceback, never
another image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, serve, write_repo
from tests.support.cli import REPO, vmbuild_cli, write_spec

BUILDS = 4
# a few packages of some size each (their downloads overlap), one depending on the others
PACKAGES = [
    *(
        Pkg(f"p{i}", files={f"usr/share/p{i}/data": os.urandom(300_000 + i * 50_000)})
        for i in range(5)
    ),
    Pkg("top", fields={"Depends": "p0, p1, p2, p3, p4"}, files={"usr/bin/top": b"#!/bin/sh\n"}),
]
FUNCTIONS = ("buildLayeredImage", "buildImage")  # the builds alternate between them


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("aptrepo")
    (root / "build").mkdir()
    keys = Keys(root / "gnupg")
    write_repo(root / "www", [build_deb(p, root / "build") for p in PACKAGES], keys)
    with serve(root / "www") as url:
        yield url, keys.keyring


def _spec(directory: Path, function: str, url: str, keyring: Path) -> Path:
    key = "copyToRoot" if function == "buildImage" else "contents"
    return write_spec(
        directory,
        f'function = "{function}"\nname = "c"\ntag = "1"\n{key} = [{{ deb = "top" }}]\n'
        f'[debian]\nmirror = "{url}"\nsuite = "{SUITE}"\nkeyring = "{keyring}"\n',
    )


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "VMBUILD_CACHE_DIR": str(cache)}


def _start(spec: Path, out: Path, cache: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "vmbuild", "build", str(spec), "--compress", "none"]
    return subprocess.Popen(
        [*argv, "--out", str(out)],
        env=_env(cache),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _prune_loop(cache: Path, stop: threading.Event, errors: list[str], said: list[str]) -> None:
    """``vmbuild cache prune --max-size 1`` again and again until ``stop``."""
    while not stop.is_set():
        done = subprocess.run(
            [sys.executable, "-m", "vmbuild", "cache", "prune", "--max-size", "1"],
            env=_env(cache),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            errors.append(done.stderr)
        said += done.stdout.splitlines()


def _round(
    tmp: Path,
    specs: list[Path],
    refs: dict[Path, bytes],
    cache: Path,
    prune: list[str] | None = None,
) -> list[str]:
    """Run the builds at once (with prune looping beside them, its output kept in
    ``prune``); what went wrong."""
    stop = threading.Event()
    prune_errors: list[str] = []
    pruner = threading.Thread(target=_prune_loop, args=(cache, stop, prune_errors, prune))
    if prune is not None:
        pruner.start()
    outs = [tmp / f"out{k}.tar" for k in range(len(specs))]
    procs = [_start(spec, out, cache) for spec, out in zip(specs, outs, strict=True)]
    try:
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        stop.set()
        if prune is not None:
            pruner.join()
    wrong = [f"prune failed: {e}" for e in prune_errors]
    for spec, out, proc, err in zip(specs, outs, procs, errs, strict=True):
        lines = err.strip().splitlines()
        if "Traceback" in err:
            wrong.append(f"{spec.parent.name}: traceback:\n{err}")
        elif proc.returncode != 0:
            wrong.append(f"{spec.parent.name}: exit {proc.returncode}: {lines}")
        elif out.read_bytes() != refs[spec]:
            wrong.append(f"{spec.parent.name}: exit 0 but another image than a serial build's")
        out.unlink(missing_ok=True)
    return wrong + [f"left in the cache: {p}" for p in _leftovers(cache)]


def _leftovers(cache: Path) -> list[Path]:
    """Part files, and lock files of entries that are not there (with no build running)."""
    return [
        p
        for p in cache.rglob(".*")
        if p.name.endswith((".part", ".new"))
        or (p.name.endswith(".lock") and not p.with_name(p.name[1:-5]).exists())
    ]


def test_parallel_debian_builds_share_a_cache(repo: tuple[str, Path], tmp_path: Path) -> None:
    url, keyring = repo
    specs: list[Path] = []
    refs: dict[Path, bytes] = {}
    for k in range(BUILDS):
        directory = tmp_path / f"b{k}"
        directory.mkdir()
        specs.append(_spec(directory, FUNCTIONS[k % len(FUNCTIONS)], url, keyring))
    for function in FUNCTIONS:  # the serial builds, each with a cache of its own
        first = specs[FUNCTIONS.index(function)]
        ref = tmp_path / f"ref-{function}.tar"
        done = vmbuild_cli(
            "build",
            first,
            "--compress",
            "none",
            "--out",
            ref,
            env={"VMBUILD_CACHE_DIR": str(tmp_path / f"ref-{function}")},
        )
        assert done.returncode == 0, done.stderr
        for spec in specs[FUNCTIONS.index(function) :: len(FUNCTIONS)]:
            refs[spec] = ref.read_bytes()
            if spec != first:  # the same lock (as CI has it committed)
                shutil.copy(first.with_name(first.name + ".lock"), spec.parent)
    wrong: list[str] = []
    for n in range(3):  # cold, then warm
        cache = tmp_path / f"cache{n}"
        wrong += _round(tmp_path, specs, refs, cache)
        wrong += [f"warm: {w}" for w in _round(tmp_path, specs, refs, cache)]
    said: list[str] = []
    for n in range(2):  # cold with prune looping beside, then again
        cache = tmp_path / f"pruned{n}"
        wrong += [f"prune: {w}" for w in _round(tmp_path, specs, refs, cache, said)]
        wrong += [f"prune, again: {w}" for w in _round(tmp_path, specs, refs, cache, said)]
    assert not wrong, "\n".join(wrong)
    # prune did remove entries meanwhile, and kept those the builds held
    assert any(line.startswith("removed ") and not line.startswith("removed 0 ") for line in said)
    assert any(line.endswith(": in use") and "/debs/" in line for line in said)
