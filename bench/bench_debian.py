"""Debian packages as an image, against ``mmdebstrap --variant=extract`` on the same suite.

An image of ``nginx-light`` and ``redis-server`` with their dependencies
(buildLayeredImage, an uncompressed docker-archive), measured in the same run as the
anchor, ``mmdebstrap --variant=extract --include=nginx-light,redis-server SUITE out.tar
MIRROR`` (suite and mirror: the host's apt configuration; mmdebstrap keeps no cache, so
each of its runs downloads everything):

- cold: an empty vmbuild cache and no lock (InRelease, the Packages index, resolving,
  every .deb downloaded and read, the layers written);
- warm: the same cache and the lock the cold run wrote (nothing downloaded);
- the peak RSS of each vmbuild run.

vmbuild's modules are compiled to bytecode first (as ``pip install`` does), so neither
run pays for compiling them (with ``PYTHONDONTWRITEBYTECODE`` set, as on these machines,
an editable checkout would compile every module on every run: about 0.3 s).

Prints anchor / vmbuild ratios (targets: cold >= 2, warm >= 10) and the peak memory
(target < 200 MB). mmdebstrap runs as root; it is installed with apt-get when missing.
Run by hand, one benchmark at a time:
``flock /tmp/vmbuild-bench.lock .venv/bin/python bench/bench_debian.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vmbuild
from vmbuild.debian.aptconf import default_source

PACKAGES = ("nginx-light", "redis-server")
SOURCES = Path(vmbuild.__file__).parent


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of running ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return took, usage.ru_maxrss * 1024


def ensure_mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "mmdebstrap"], check=True)
    return shutil.which("mmdebstrap") or sys.exit("mmdebstrap did not install")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="runs of each (best kept)")
    args = ap.parse_args()
    mmdebstrap = ensure_mmdebstrap()
    compileall.compile_dir(SOURCES, quiet=1)
    src = default_source(None)
    suite = src.suites[0]
    with tempfile.TemporaryDirectory(prefix="bench-debian-") as tmp:
        work = Path(tmp)
        spec = work / "spec.toml"
        items = ", ".join(f'{{ deb = "{p}" }}' for p in PACKAGES)
        spec.write_text(f'function = "buildLayeredImage"\nname = "bench"\ncontents = [{items}]\n')
        lock = work / "spec.toml.lock"
        vmbuild = [sys.executable, "-m", "vmbuild", "build", str(spec), "--compress", "none"]
        anchor, cold, warm, rss = [], [], [], 0
        for i in range(args.rounds):
            out = work / "mm.tar"
            t, _ = timed(
                [
                    mmdebstrap,
                    "--quiet",
                    "--variant=extract",
                    f"--include={','.join(PACKAGES)}",
                    suite,
                    str(out),
                    src.uri,
                ]
            )
            anchor.append(t)
            out.unlink()
            cache = work / f"cache-{i}"
            lock.unlink(missing_ok=True)
            env = {**os.environ, "VMBUILD_CACHE_DIR": str(cache)}
            t, peak = timed([*vmbuild, "--out", str(work / "cold.tar")], env)
            cold.append(t)
            rss = max(rss, peak)
            t, peak = timed([*vmbuild, "--out", str(work / "warm.tar"), "--locked"], env)
            warm.append(t)
            rss = max(rss, peak)
            shutil.rmtree(cache)
        a, c, w = min(anchor), min(cold), min(warm)
        print(f"suite {suite}, {' + '.join(PACKAGES)}, best of {args.rounds}")
        print(f"mmdebstrap --variant=extract: {a:.2f} s")
        print(f"vmbuild cold: {c:.2f} s  ratio {a / c:.2f} (target >= 2)")
        print(f"vmbuild warm: {w:.2f} s  ratio {a / w:.2f} (target >= 10)")
        print(f"vmbuild peak RSS: {rss / 2**20:.0f} MB (target < 200 MB)")


if __name__ == "__main__":
    main()
