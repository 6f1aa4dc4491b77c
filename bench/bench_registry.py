"""Registry benchmark: pull and push against skopeo, on a local docker-registry.

Makes an image of several layers (random, hex text and zeros: about 900 MB
uncompressed, 350 MB as gzip; ``--small`` for a quick smoke run), pushes it into a
registry with skopeo, then times, in the same run:

- pull: ``vmbuild build`` of a pullImage spec (as ``vmbuild prefetch`` prints it: a
  docker-archive with uncompressed layers, its hash checked) against ``skopeo copy
  docker://… docker-archive:…``, cold cache; then warm (the archive kept by its hash:
  a hard link, see registry/pulledcache.py; target 3x the cold pull); and the prefetch
  itself, which also hashes every layer tar to check its diff_id.
- push: ``vmbuild push`` of that archive against ``skopeo copy docker-archive:… docker://…``,
  each to a fresh registry with empty caches; then the same push again (nothing
  changed: vmbuild's is one HEAD of the manifest, see registry/repush.py), and the floor
  under it: Python's start-up alone, and with http.client imported.

Each is run ``--runs`` times, alternating, and the best time of each kept (the machine
may be busy with other work). Prints wall and CPU times (user + system of the tool's
processes, which other work on the machine does not inflate) and ratios (skopeo's /
vmbuild's: above 1 means vmbuild is faster).
Run by hand: ``.venv/bin/python bench/bench_registry.py [--small]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.registry_fixture import registry  # noqa: E402
from vmbuild.oci.archive import write_docker_archive  # noqa: E402
from vmbuild.oci.digest import of_file  # noqa: E402
from vmbuild.oci.image import BlobRef, Image, Layer  # noqa: E402

MB = 1 << 20


def make_layer(path: Path, random_mb: int, hex_mb: int, zero_mb: int, seed: int) -> None:
    """A layer tar of files of 16 MiB: random bytes, hex text (half compressible), zeros."""
    import tarfile

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        n = 0
        for kind, total in (("random", random_mb), ("hex", hex_mb), ("zero", zero_mb)):
            left = total * MB
            while left > 0:
                size = min(16 * MB, left)
                if kind == "random":
                    data = os.urandom(size)
                elif kind == "hex":
                    data = os.urandom(size // 2).hex().encode()
                else:
                    data = bytes(size)
                info = tarfile.TarInfo(f"data/{seed}/{kind}-{n}")
                info.size = len(data)
                info.mtime = 1
                import io

                tar.addfile(info, io.BytesIO(data))
                left -= size
                n += 1


def make_image(work: Path, small: bool) -> Path:
    # (random, hex, zeros) MiB per layer; gzip: random ~1x, hex ~0.55x, zeros ~0.
    plan = (
        [(2, 4, 4), (4, 2, 2), (1, 1, 8)]
        if small
        else [
            (90, 60, 80),
            (60, 90, 70),
            (40, 40, 150),
            (20, 30, 100),
            (5, 5, 20),
        ]
    )
    layers = []
    for i, (r, h, z) in enumerate(plan):
        path = work / f"layer{i}.tar"
        make_layer(path, r, h, z, i)
        layers.append(Layer(of_file(path), BlobRef.whole(path), "none"))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]},
        "config": {"Cmd": ["/bin/sh"]},
    }
    out = work / "source.tar"
    with open(out, "wb") as f:
        write_docker_archive(Image("bench/img", "1", config, layers), f, 1)
    for la in layers:
        assert isinstance(la.blob, BlobRef)
        la.blob.path.unlink()
    return out


class Run(NamedTuple):
    wall: float
    cpu: float  # user + system seconds of the tool's processes


def timed(argv: list[str], env: dict[str, str] | None = None, drop: Path | None = None) -> Run:
    """One run; ``drop`` (its output) is removed afterwards."""
    os.sync()  # the previous run's writes must not slow this one down
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr}")
    if drop is not None:
        drop.unlink()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(took, cpu)


def vmbuild(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmbuild", *args]


def line(what: str, ours: list[Run], theirs: list[Run] | None = None, target: str = "") -> None:
    """Best wall time and best CPU time of each, and skopeo's / vmbuild's for both."""
    wall, cpu = min(r.wall for r in ours), min(r.cpu for r in ours)
    text = f"{what:<30} vmbuild {wall:5.2f} s (cpu {cpu:5.2f} s)"
    if theirs:
        t_wall, t_cpu = min(r.wall for r in theirs), min(r.cpu for r in theirs)
        text += f"  skopeo {t_wall:5.2f} s (cpu {t_cpu:5.2f} s)"
        text += f"  ratio {t_wall / wall:4.2f}x (cpu {t_cpu / cpu:4.2f}x)"
    print(f"{text} {target}".rstrip())


def bench_pull(work: Path, ref: str, runs: int, sk_env: dict[str, str]) -> Path:
    out = work / "pulled.tar"
    # The spec a user would have: what prefetch prints (timed once, for the record).
    prefetch = ["prefetch", "--image-name", ref, "--image-tag", "1", "-q"]
    first = {"VMBUILD_CACHE_DIR": str(work / "cache-prefetch")}
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    printed = subprocess.run(
        vmbuild(*prefetch), env={**os.environ, **first}, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if printed.returncode != 0:
        raise SystemExit(f"prefetch failed: {printed.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    spec = work / "pull.toml"
    spec.write_text(printed.stdout)  # a whole pullImage spec, as it says
    build = vmbuild("build", str(spec), "--out", str(out))
    skopeo_pull = ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}:1"]
    ours: list[Run] = []
    theirs: list[Run] = []
    for i in range(runs):  # alternate, keep the best of each: the machine may be busy
        theirs.append(timed([*skopeo_pull, f"docker-archive:{out}:{ref}:1"], sk_env, out))
        cold = {"VMBUILD_CACHE_DIR": str(work / f"cache-pull-{i}")}
        ours.append(timed(build, cold, out if i + 1 < runs else None))
    line("pull (pullImage), cold cache", ours, theirs, "(target >= 2x)")
    warm = work / "warm.tar"
    build[build.index(str(out))] = str(warm)
    cold_best = min(r.wall for r in ours)
    warm_runs = [timed(build, cold, warm) for _ in range(runs)]
    ratio = cold_best / min(r.wall for r in warm_runs)
    line("pull, warm cache", warm_runs, None, f"({ratio:.1f}x the cold pull; target >= 3x)")
    line("prefetch (checks diff_ids)", [Run(took, cpu)])
    return out


def bench_push(work: Path, image: Path, runs: int, sk_env: dict[str, str]) -> None:
    ours: list[Run] = []
    theirs: list[Run] = []
    again_ours: list[Run] = []
    again_theirs: list[Run] = []
    for i in range(runs):
        with registry(work / f"reg-sk-{i}") as reg_sk, registry(work / f"reg-us-{i}") as reg_us:
            sk = ["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{image}"]
            sk.append(f"docker://{reg_sk.host}/bench/img:1")
            us = vmbuild("push", "-q", str(image), f"docker://{reg_us.host}/bench/img:1")
            cache = {"VMBUILD_CACHE_DIR": str(work / f"cache-push-{i}")}
            home = work / f"skopeo-home-{i}"  # a fresh blob-info cache
            home.mkdir()
            theirs.append(timed(sk, {**sk_env, "HOME": str(home)}))
            ours.append(timed(us, cache))
            again_theirs.append(timed(sk, {**sk_env, "HOME": str(home)}))
            again_ours.append(timed(us, cache))
    line("push, fresh repository", ours, theirs)
    best = min(r.wall for r in again_ours)
    ok = best <= min(r.wall for r in again_theirs)
    verdict = "(target: no slower than skopeo" + (")" if ok else ": MISSED)")
    line("push again, nothing changed", again_ours, again_theirs, verdict)
    # The floor under any Python push: the interpreter's start-up, and with the stdlib's
    # HTTP client (http.client: ssl, email) loaded.
    floor = [timed([sys.executable, "-c", "pass"]) for _ in range(3 * runs)]
    http = [timed([sys.executable, "-c", "import http.client"]) for _ in range(3 * runs)]
    line("  floor: python -c pass", floor)
    line("  floor: + import http.client", http)


def main() -> int:
    # An installed vmbuild has its bytecode compiled (pip does it): let the runs write
    # theirs once rather than compile every module on every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(vmbuild("--help"), capture_output=True, check=False)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a ~30 MB image: a quick smoke run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each, best kept (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    home = work / "skopeo-home"  # skopeo's blob-info cache lives under $HOME
    home.mkdir()
    sk_env = {"HOME": str(home)}
    try:
        t = time.perf_counter()
        source = make_image(work, args.small)
        size = source.stat().st_size
        print(f"image: {size / 1e6:.0f} MB uncompressed, made in {time.perf_counter() - t:.1f} s")
        with registry(work / "reg-src") as src:
            ref = f"{src.host}/bench/img"
            push = ["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{source}"]
            setup = timed([*push, f"docker://{ref}:1"], sk_env)
            blobs = src.root / "docker/registry/v2/blobs"
            stored = sum(p.stat().st_size for p in blobs.rglob("data"))
            print(f"setup: skopeo pushed it ({stored / 1e6:.0f} MB gzip) in {setup.wall:.1f} s")
            pulled = bench_pull(work, ref, max(1, args.runs), sk_env)
        bench_push(work, pulled, max(1, args.runs), sk_env)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
