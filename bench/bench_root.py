"""The build VM's cost in a build, and exportImage's two paths, against anchors.

1. VM overhead: a no-op runAsRoot build minus the same build without runAsRoot, against
   ``guestfish -a /dev/null run`` (libguestfs' appliance, forced to TCG) in the same run.
   Target: at least 6x faster than libguestfs.
2. exportImage of a many-layer image: the host merge and the in-VM merge, against
   ``skopeo copy`` + ``umoci unpack`` + ``tar -c`` of the same image.

Usage: ``python bench/bench_root.py [--small]``; run by hand, not in CI.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmbuild-bench-"))
    try:
        vm_overhead(work, 2 if args.small else 5)
        export_paths(work, 20 if args.small else 130, 1 << 16 if args.small else 1 << 20)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
