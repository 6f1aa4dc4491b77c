"""Two runners and a remote cache: runner B's build from the cache against runner A's
cold build, in the same run.

Runner A (empty local caches, the guest kernel and initramfs already made, as on a CI
image) builds a runAsRoot spec with ``--cache-to`` a local docker-registry; runner B,
with empty local caches of its own, builds the same spec with ``--cache-from``: it
fetches the step's layer and boots no VM. Prints both times and A's / B's (target: at
least 5x). Each is run ``--runs`` times with fresh caches and the best kept.

Then a buildLayeredImage of Debian packages (``--debs``, default bash and coreutils, from
the mirror the host's apt is configured with; the lock written once beforehand): runner
A fetches the .debs, packs their layers and pushes them; runner B, with empty local
caches, fetches only the packed layers (debian/remotelayers.py). Prints both and A's /
B's (no target in the issue; for the record).
Run by hand: ``flock /tmp/vmbuild-bench.lock .venv/bin/python bench/bench_remote_cache.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.images import image_from_layers, layer_tar  # noqa: E402
from tests.support.registry_fixture import registry  # noqa: E402

SCRIPT = "mkdir -p /opt/app && head -c 20000000 /dev/urandom > /opt/app/blob && chown -R 1:1 /opt"


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env})
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr}")
    return took


def runner(work: Path, name: str) -> dict[str, str]:
    """A runner's own empty caches, sharing only the guest kernel and initramfs."""
    cache = work / name / "cache"
    shared = Path(os.environ.get("VMBUILD_CACHE_DIR", Path.home() / ".cache" / "vmbuild"))
    cache.mkdir(parents=True)
    for kind in (
        "kernel",
        "initramfs",
        "initramfs-index",
        "cloud-kernel",
        "cloud-initrd",
        "accel-probe",
        "ssh-keys",
    ):
        if (shared / kind).is_dir():
            shutil.copytree(shared / kind, cache / kind, symlinks=True)
    return {"VMBUILD_CACHE_DIR": str(cache), "VMBUILD_STEP_CACHE": str(work / name / "steps")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--debs", default="bash,coreutils", help="packages of the layered spec")
    ap.add_argument("--skip-step", action="store_true", help="only the Debian layers")
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled
    work = Path(tempfile.mkdtemp(prefix="bench-remote-cache-"))
    try:
        base = image_from_layers(
            work / "base.tar",
            [layer_tar(work / "l0.tar", [("etc", "d", ""), ("etc/os", "f", "x")])],
        )
        (work / "content").mkdir()
        (work / "content" / "app").write_text("app\n")
        spec = work / "step.toml"
        spec.write_text(
            f'name = "app"\ntag = "1"\nfromImage = "{base}"\ncopyToRoot = "content"\n'
            f'runAsRoot = "{SCRIPT}"\n'
        )
        a_times, b_times = [], []
        with registry(work / "registry") as reg:
            for i in range(0 if args.skip_step else max(1, args.runs)):
                url = f"docker://{reg.host}/bench/cache{i}"
                build = [sys.executable, "-m", "vmbuild", "build", str(spec), "--out"]
                a_times.append(
                    timed(
                        [*build, str(work / f"a{i}.tar"), "--cache-to", url], runner(work, f"a{i}")
                    )
                )
                b_times.append(
                    timed(
                        [*build, str(work / f"b{i}.tar"), "--cache-from", url],
                        runner(work, f"b{i}"),
                    )
                )
                same = (work / f"a{i}.tar").read_bytes() == (work / f"b{i}.tar").read_bytes()
                if not same:
                    raise SystemExit("runner B's output differs from runner A's")
            if a_times:
                a, b = min(a_times), min(b_times)
                verdict = "" if a / b >= 5 else ": MISSED"
                print(f"runner A, cold (boots the VM, pushes)   {a:6.2f} s")
                print(f"runner B, from the remote cache (no VM) {b:6.2f} s")
                print(f"ratio {a / b:.1f}x (target >= 5x{verdict})")
            bench_debs(work, reg.host, args.debs.split(","), max(1, args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def bench_debs(work: Path, host: str, debs: list[str], runs: int) -> None:
    contents = ", ".join(f'{{ deb = "{d}" }}' for d in debs)
    spec = work / "debs.toml"
    spec.write_text(
        f'function = "buildLayeredImage"\nname = "debs"\ntag = "1"\n'
        f"contents = [{contents}]\n[debian]\n"
    )
    lock = [sys.executable, "-m", "vmbuild", "lock", str(spec)]
    timed(lock, runner(work, "lock"))
    a_times, b_times = [], []
    for i in range(runs):
        url = f"docker://{host}/bench/debs{i}"
        build = [sys.executable, "-m", "vmbuild", "build", str(spec), "--locked", "--out"]
        a_env, b_env = runner(work, f"debs-a{i}"), runner(work, f"debs-b{i}")
        a_times.append(timed([*build, str(work / f"da{i}.tar"), "--cache-to", url], a_env))
        b_times.append(timed([*build, str(work / f"db{i}.tar"), "--cache-from", url], b_env))
        if (work / f"da{i}.tar").read_bytes() != (work / f"db{i}.tar").read_bytes():
            raise SystemExit("runner B's layered output differs from runner A's")
        if list((Path(b_env["VMBUILD_CACHE_DIR"]) / "debs").glob("*.deb")):
            raise SystemExit("runner B fetched .debs")
    a, b = min(a_times), min(b_times)
    print(f"layered {'+'.join(debs)}: runner A, cold (fetches .debs, packs, pushes) {a:6.2f} s")
    print(f"layered {'+'.join(debs)}: runner B, layers from the remote cache   {b:6.2f} s")
    print(f"ratio {a / b:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
