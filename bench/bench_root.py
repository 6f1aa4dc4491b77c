"""The build VM's cost in a build, and exportImage's two paths, against anchors.

1. VM overhead: a no-op runAsRoot build minus the same build without runAsRoot, against
   ``guestfish -a /dev/null run`` (libguestfs' appliance, forced to TCG) in the same run.
   Target: at least 6x faster than libguestfs.
2. exportImage of a many-layer image: the host merge and the in-VM merge, against
   ``skopeo copy`` + ``umoci unpack`` + ``tar -c`` of the same image.
3. runAsRoot on a Debian base (``--debian``; ``--debian-big`` for the 1 GB one): the
   base made by ``bench/debian_base.py`` (mmdebstrap, cached), a script adding a user
   and a directory, against ``buildah from`` + ``run --isolation chroot`` + ``commit``
   of the same in the same run. vmbuild cold (no lower images, no remembered layer
   checks, no step cache), warm (lower images cached, the step not), and a step-cache
   hit. Targets: cold <= 1.5x buildah (2x on the 1 GB base), warm <= 1.2x, hit < 0.3 s
   and >= 10x faster.

Usage: ``flock /tmp/vmbuild-bench.lock python bench/bench_root.py [--small] [--debian]
[--debian-big] [--only-debian] [--only-hit N]``; run by hand, not in CI. ``--only-hit N``
times only the step-cache hit, N times after one build that fills the cache (seconds,
not minutes), with each run's CPU time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.images import image_from_layers, layer_tar  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - t0


def vmbuild(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "vmbuild", *map(str, args)]


def best(n: int, argv: list[str], **kw: object) -> float:
    return min(timed(argv, **kw) for _ in range(n))  # type: ignore[arg-type]


def vm_overhead(work: Path, runs: int) -> None:
    (work / "root").mkdir()
    (work / "root" / "hello").write_text("hi\n")
    plain = work / "plain.toml"
    plain.write_text('name = "b"\ncopyToRoot = "root"\n')
    root = work / "root.toml"
    root.write_text('name = "b"\ncopyToRoot = "root"\nrunAsRoot = "true"\n')
    timed(vmbuild("build", root, "--out", work / "warm.tar"))  # kernel/initramfs cache
    without = best(runs, vmbuild("build", plain, "--out", work / "p.tar"))
    with_vm = statistics.median(
        timed(vmbuild("build", root, "--out", work / "r.tar")) for _ in range(runs)
    )
    overhead = with_vm - without
    print(
        f"build without runAsRoot {without:.2f} s, with a no-op runAsRoot {with_vm:.2f} s: "
        f"VM overhead {overhead:.2f} s"
    )
    if not shutil.which("guestfish"):
        print("guestfish is missing -- apt-get install libguestfs-tools to compare")
        return
    env = {**os.environ, "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}
    gf = statistics.median(
        timed(["guestfish", "-a", "/dev/null", "run"], env=env) for _ in range(runs)
    )
    print(
        f"guestfish -a /dev/null run (TCG): {gf:.2f} s -> vmbuild's VM overhead is "
        f"x{gf / overhead:.2f} faster (target >= 6)"
    )


def export_paths(work: Path, layers: int, size: int) -> None:
    paths = []
    for i in range(layers):
        members: list[tuple[str, str, bytes | str]] = [
            ("data", "d", ""),
            (f"data/f{i}", "f", os.urandom(size)),
        ]
        if i:
            members.append((f"data/.wh.f{i - 1}", "w", ""))
        paths.append(layer_tar(work / f"l{i}.tar", members))
    image = image_from_layers(work / "image.tar", paths)
    host = work / "host.toml"
    host.write_text(f'function = "exportImage"\nfromImage = "{image}"\n')
    vm = work / "vm.toml"
    vm.write_text(f'function = "exportImage"\nfromImage = "{image}"\nmergeInVM = true\n')
    t_host = timed(vmbuild("build", host, "--out", work / "h.tar"))
    t_vm = timed(vmbuild("build", vm, "--out", work / "v.tar"))

    def anchor() -> float:
        for p in ("oci", "bundle"):
            shutil.rmtree(work / p, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run(
            ["skopeo", "copy", f"docker-archive:{image}", f"oci:{work / 'oci'}:x"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["umoci", "unpack", "--image", f"{work / 'oci'}:x", str(work / "bundle")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["tar", "-C", str(work / "bundle" / "rootfs"), "-cf", str(work / "a.tar"), "."],
            check=True,
        )
        return time.perf_counter() - t0

    t_anchor = anchor()
    print(
        f"export of {layers} layers: host merge {t_host:.2f} s, in-VM merge {t_vm:.2f} s, "
        f"skopeo+umoci+tar {t_anchor:.2f} s -> host x{t_anchor / t_host:.2f}, "
        f"VM x{t_anchor / t_vm:.2f}"
    )


DEBIAN_SCRIPT = (
    "groupadd -r app && useradd -r -g app -d /home/app -m app && "
    "mkdir -p /data && chown app:app /data"
)


def _forget_lowers(base: Path) -> None:
    """Remove the base's lower images from the cache, and the remembered layer checks
    (a cold run reads and checks the base again, and makes its lowers again)."""
    import json
    import tarfile

    from vmbuild import cache
    from vmbuild.oci import layercheck

    shutil.rmtree(cache.cache_dir() / layercheck.MEMO_KIND, ignore_errors=True)
    from vmbuild.oci.image import BlobRef, Layer
    from vmbuild.vm import lowers
    from vmbuild.vm.qemu import MAX_DISKS

    with tarfile.open(base) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    fake = [Layer(d, BlobRef.whole(base), "none") for d in config["rootfs"]["diff_ids"]]
    for group in lowers.plan(fake, MAX_DISKS - 3):
        shutil.rmtree(cache.entry(lowers.KIND, group.key), ignore_errors=True)


def debian_case(work: Path, runs: int, big: bool) -> None:
    from bench.debian_base import debian_base

    base = debian_base(big)
    label = "the 1 GB Debian base" if big else "a Debian base"
    spec = work / "debian.toml"
    spec.write_text(
        f'name = "app"\ntag = "t"\nfromImage = "{base}"\nrunAsRoot = "{DEBIAN_SCRIPT}"\n'
    )

    def build(steps: Path, out: str) -> float:
        env = {**os.environ, "VMBUILD_STEP_CACHE": str(steps)}
        return timed(vmbuild("build", spec, "--out", work / out, "--compress", "none"), env=env)

    def buildah() -> float:
        store = work / "buildah"
        cmd = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"),
               "--storage-driver", "vfs"]  # fmt: skip
        t0 = time.perf_counter()
        ctr = subprocess.run([*cmd, "from", "-q", f"docker-archive:{base}"], check=True,
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
        subprocess.run([*cmd, "run", "--isolation", "chroot", ctr, "--", "sh", "-c",
                        DEBIAN_SCRIPT], check=True, capture_output=True)  # fmt: skip
        subprocess.run([*cmd, "commit", "-q", ctr, "bench-app:t"], check=True,
                       capture_output=True)  # fmt: skip
        took = time.perf_counter() - t0
        subprocess.run([*cmd, "rm", "-a"], check=False, capture_output=True)
        subprocess.run([*cmd, "rmi", "-a", "-f"], check=False, capture_output=True)
        return took

    colds, warms, hits, anchors = [], [], [], []
    for i in range(runs):
        _forget_lowers(base)
        colds.append(build(work / f"steps-cold{i}", "cold.tar"))
        warms.append(build(work / f"steps-warm{i}", "warm.tar"))
        hits.append(min(build(work / f"steps-warm{i}", "hit.tar") for _ in range(3)))
        anchors.append(buildah())
    cold, warm, hit, anchor = (statistics.median(x) for x in (colds, warms, hits, anchors))
    print(
        f"runAsRoot on {label} ({base.stat().st_size / 1e6:.0f} MB): buildah from+run+commit "
        f"{anchor:.2f} s; vmbuild cold {cold:.2f} s (x{cold / anchor:.2f} of buildah, target "
        f"<= {2 if big else 1.5}), warm lowers {warm:.2f} s (x{warm / anchor:.2f}, target <= 1.2),"
        f" step-cache hit {hit:.2f} s ({anchor / hit:.1f}x faster, target < 0.3 s and >= 10x)"
    )


def hit_only(work: Path, runs: int) -> None:
    """Only the Debian case's step-cache hit: one build fills the step cache (the VM runs
    once), then ``runs`` identical builds, each timed (wall, and CPU from its rusage)."""
    from bench.debian_base import debian_base

    base = debian_base(False)
    spec = work / "debian.toml"
    spec.write_text(
        f'name = "app"\ntag = "t"\nfromImage = "{base}"\nrunAsRoot = "{DEBIAN_SCRIPT}"\n'
    )
    env = {**os.environ, "VMBUILD_STEP_CACHE": str(work / "steps")}
    argv = vmbuild("build", spec, "--out", work / "hit.tar", "--compress", "none")
    subprocess.run(argv, check=True, capture_output=True, env=env)  # fills the step cache
    subprocess.run(argv, check=True, capture_output=True, env=env)  # remembers the checks
    walls, cpus = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - t0)
        cpus.append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if proc.returncode or "comes from the step cache" not in err:
            raise SystemExit(f"not a step-cache hit (exit {proc.returncode}):\n{err}")
    print(
        f"step-cache hit on a Debian base ({base.stat().st_size / 1e6:.0f} MB), {runs} runs: "
        f"min {min(walls):.3f} s, median {statistics.median(walls):.3f} s (target < 0.3 s); "
        f"CPU (user+sys) median {statistics.median(cpus):.3f} s; load {os.getloadavg()[0]:.2f}"
    )


def main() -> int:
    # As an installed vmbuild does (its wheel's bytecode is compiled once), each timed
    # command reads its modules' bytecode instead of compiling them again (~0.1 s).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--debian", action="store_true", help="add the Debian base case")
    ap.add_argument("--debian-big", action="store_true", help="add the 1 GB Debian base case")
    ap.add_argument("--only-debian", action="store_true", help="only the Debian case(s)")
    ap.add_argument(
        "--only-hit", type=int, metavar="N", help="only the Debian case's step-cache hit, N times"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmbuild-bench-"))
    try:
        if args.only_hit:
            hit_only(work, args.only_hit)
            return 0
        if not args.only_debian:
            vm_overhead(work, 2 if args.small else 5)
            export_paths(work, 20 if args.small else 130, 1 << 16 if args.small else 1 << 20)
        if args.debian or (args.only_debian and not args.debian_big):
            debian_case(work, 1 if args.small else 3, big=False)
        if args.debian_big:
            debian_case(work, 1, big=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
