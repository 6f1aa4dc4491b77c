"""Registry benchmark: pull and push against skopeo, on a local docker-registry.

Makes an image of several layers (random, hex text and zeros: about 900 MB
uncompressed, 350 MB as gzip; ``--small`` for a quick smoke run), pushes it into a
registry with skopeo, then times, in the same run:

- pull: ``vmbuild prefetch --out`` (tag -> digest, docker-archive with uncompressed
  layers, hashed) against ``skopeo copy docker://… docker-archive:…``; cold cache.
- push: ``vmbuild push`` of that archive against ``skopeo copy docker-archive:… docker://…``,
  each to a fresh registry; then the same push again (nothing changed: HEADs only).

Prints times and ratios (skopeo time / vmbuild time: > 1 means vmbuild is faster).
Run by hand: ``.venv/bin/python bench/bench_registry.py [--small]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.registry_fixture import Registry, registry  # noqa: E402
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


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    os.sync()  # the previous run's writes must not slow this one down
    start = time.perf_counter()
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr}")
    return took


def vmbuild(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmbuild", *args]


@contextlib.contextmanager
def fresh_registry(work: Path, name: str) -> Iterator[Registry]:
    with registry(work / name) as reg:
        yield reg


def line(what: str, ours: float, theirs: float, target: str = "") -> None:
    ratio = theirs / ours if ours else float("inf")
    print(
        f"{what:<34} vmbuild {ours:7.2f} s   skopeo {theirs:7.2f} s   ratio {ratio:5.2f}x {target}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a ~30 MB image: a quick smoke run")
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
        with fresh_registry(work, "reg-src") as src:
            ref = f"{src.host}/bench/img"
            t = timed(
                [
                    "skopeo",
                    "copy",
                    "--dest-tls-verify=false",
                    f"docker-archive:{source}",
                    f"docker://{ref}:1",
                ],
                sk_env,
            )
            blobs = src.root / "docker/registry/v2/blobs"
            stored = sum(p.stat().st_size for p in blobs.rglob("data"))
            print(f"setup: skopeo pushed it ({stored / 1e6:.0f} MB gzip) in {t:.1f} s")

            ours_tar, theirs_tar = work / "ours.tar", work / "theirs.tar"
            cold = {"VMBUILD_CACHE_DIR": str(work / "cache-pull")}
            t_sk = timed(
                [
                    "skopeo",
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{ref}:1",
                    f"docker-archive:{theirs_tar}:{ref}:1",
                ],
                sk_env,
            )
            t_us = timed(
                vmbuild(
                    "prefetch",
                    "--image-name",
                    ref,
                    "--image-tag",
                    "1",
                    "--out",
                    str(ours_tar),
                    "-q",
                ),
                cold,
            )
            line("pull (cold cache)", t_us, t_sk, "(target >= 2x)")
            theirs_tar.unlink()
            t_warm = timed(
                vmbuild(
                    "prefetch",
                    "--image-name",
                    ref,
                    "--image-tag",
                    "1",
                    "--out",
                    str(work / "warm.tar"),
                    "-q",
                ),
                cold,
            )
            (work / "warm.tar").unlink()
            print(f"{'pull (warm blob cache)':<34} vmbuild {t_warm:7.2f} s")

        with fresh_registry(work, "reg-sk") as reg_sk, fresh_registry(work, "reg-us") as reg_us:
            push_cache = {"VMBUILD_CACHE_DIR": str(work / "cache-push")}
            sk_push = [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"docker-archive:{ours_tar}",
                f"docker://{reg_sk.host}/bench/img:1",
            ]
            us_push = vmbuild("push", "-q", str(ours_tar), f"docker://{reg_us.host}/bench/img:1")
            t_sk = timed(sk_push, sk_env)
            t_us = timed(us_push, push_cache)
            line("push (fresh repository)", t_us, t_sk)
            t_sk = timed(sk_push, sk_env)
            t_us = timed(us_push, push_cache)
            line(
                "push again (nothing changed)",
                t_us,
                t_sk,
                "(target < 0.5 s)" if t_us < 0.5 else "(target < 0.5 s: MISSED)",
            )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
