"""Benchmark: `vmbuild vm run -- true` against libguestfs' appliance, in the same run.

    .venv/bin/python bench/bench_vm.py [--runs N] [--accel tcg|auto]

The anchor is `guestfish -a /dev/null run` forced to TCG
(LIBGUESTFS_BACKEND_SETTINGS=force_tcg): boot a minimal appliance and stop it, the same
job as ours. vmbuild's wall time is split into CLI start (Python and imports), prepare
(cache lookups, the scratch disk), QEMU start (to the QMP greeting), kernel boot (to
the guest's init), guest ready (init, dropbear, SSH login), the command, and teardown.
Prints medians and the ratio; the target is libguestfs / vmbuild >= 6.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = ("prepare", "qemu_start", "kernel_boot", "guest_ready", "command", "teardown")
TARGET = 6.0


def vmbuild_once(accel: str) -> dict[str, float]:
    argv = [sys.executable, "-m", "vmbuild", "vm", "run", "--timings", "--accel", accel]
    started = time.monotonic()
    proc = subprocess.run(
        [*argv, "--", "true"], cwd=REPO, capture_output=True, text=True, check=False
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench_vm: vmbuild vm run failed ({proc.returncode}): {proc.stderr.strip()}")
    found = dict(re.findall(r"(\w+)=([\d.]+)s", proc.stderr))
    split = {k: float(found.get(k, 0.0)) for k in PHASES}
    split["cli_start"] = max(0.0, wall - sum(split.values()))
    split["wall"] = wall
    return split


def supermin_kernel() -> dict[str, str]:
    """Environment that gives supermin a kernel when the host has none in /boot.

    Containers usually have no /boot kernel; then Debian's cloud kernel is unpacked once
    into the cache (apt-get download, dpkg-deb -x, depmod -b) and passed to supermin.
    """
    if list(Path("/boot").glob("vmlinuz-*")):
        return {}
    from vmbuild import cache
    from vmbuild.vm import cloudkernel

    name, version = cloudkernel._package()
    root = cache.cache_dir() / "bench-guestfs-kernel" / f"{name}_{version}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        subprocess.run(["apt-get", "download", name], cwd=root, check=True, capture_output=True)
        deb = next(root.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root / "x")], check=True)
        deb.unlink()
        kver = next((root / "x/lib/modules").iterdir()).name
        subprocess.run(["/usr/sbin/depmod", "-b", str(root / "x"), kver], check=True)
        (root / "done").write_text(kver)
    kver = (root / "done").read_text()
    if not Path("/lib/modules").is_dir():
        sys.exit(
            "bench_vm: supermin (libguestfs) needs a /lib/modules directory on the host"
            " -- create it (mkdir /lib/modules) or apt-get install linux-image-cloud-amd64"
        )
    return {
        "SUPERMIN_KERNEL": str(root / "x/boot" / f"vmlinuz-{kver}"),
        "SUPERMIN_MODULES": str(root / "x/lib/modules" / kver),
        "SUPERMIN_KERNEL_VERSION": kver,
    }


def guestfish_once(extra: dict[str, str]) -> float:
    env = dict(os.environ, LIBGUESTFS_BACKEND_SETTINGS="force_tcg", LIBGUESTFS_BACKEND="direct")
    env.update(extra)
    started = time.monotonic()
    proc = subprocess.run(
        ["guestfish", "-a", "/dev/null", "run"], env=env, capture_output=True, check=False
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"bench_vm: guestfish failed: {proc.stderr.decode(errors='replace').strip()}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description="vmbuild's VM against libguestfs, under TCG")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--accel", default="tcg", help="vmbuild's accelerator (default tcg)")
    args = parser.parse_args()

    fish_env: dict[str, str] | None = None
    if shutil.which("guestfish"):
        fish_env = supermin_kernel()
    else:
        print(
            "bench_vm: guestfish is not installed, so there is no anchor to compare with"
            " -- install it: apt-get install libguestfs-tools",
            file=sys.stderr,
        )
    print(
        f"bench_vm: warming up (kernel, initramfs, probe, appliance), then {args.runs} runs each,"
    )
    print("          alternating, so that load on the host weighs on both alike")
    vmbuild_once(args.accel)
    if fish_env is not None:
        guestfish_once(fish_env)  # builds or refreshes the supermin appliance
    runs: list[dict[str, float]] = []
    fish: list[float] = []
    for _ in range(args.runs):
        runs.append(vmbuild_once(args.accel))
        if fish_env is not None:
            fish.append(guestfish_once(fish_env))

    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"vmbuild vm run -- true (median of {args.runs}), seconds:")
    for k in ("cli_start", *PHASES):
        print(f"  {k:<12} {med[k]:6.3f}")
    walls = ", ".join(f"{r['wall']:.2f}" for r in runs)
    print(f"  {'wall':<12} {med['wall']:6.3f}   (runs: {walls})")
    if fish_env is None:
        return 2
    fish_med = statistics.median(fish)
    print(f"guestfish -a /dev/null run, TCG (median of {args.runs}): {fish_med:.3f} s")
    print(f"  (runs: {', '.join(f'{t:.2f}' for t in fish)})")
    ratio = fish_med / med["wall"]
    boot = med["wall"] - med["command"]
    print(f"ratio libguestfs / vmbuild (wall):            {ratio:5.2f}x  (target >= {TARGET:g}x)")
    print(f"ratio libguestfs / vmbuild (without command): {fish_med / boot:5.2f}x")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
