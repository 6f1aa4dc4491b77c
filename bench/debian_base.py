"""A Debian 12 base image for the benchmarks, made once and kept between runs.

``mmdebstrap --variant=apt bookworm`` (as root) from the mirror the host's apt is
configured with (its deb822 ``.sources`` files, else ``sources.list``), loaded into a
throwaway podman store with ``podman import`` and written out with ``podman save`` as a
docker-archive: ``cache_dir()/bench/debian-bookworm-apt.tar``. ``big=True`` adds
900 MB of incompressible files below /opt/big (still one layer): a base of about 1 GB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from vmbuild.cache import cache_dir

SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")


def host_mirror(suite: str = "bookworm") -> str:
    """The host's Debian mirror for ``suite`` (a URI from its apt configuration)."""
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
            ):
                return fields["uris"].split()[0]
    if SOURCES_LIST.exists():
        for line in SOURCES_LIST.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and suite in parts:
                return next(p for p in parts[1:] if "://" in p)
    raise SystemExit(f"no apt source for {suite} on this host")


def _podman(store: Path, *args: str) -> None:
    done = subprocess.run(
        [
            "podman",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--tmpdir",
            str(store / "tmp"),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            *args,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"podman {args[0]} failed: {done.stderr.strip()}")


HOOK_1G = (
    '--customize-hook=mkdir -p "$1/opt/big" && for i in $(seq 1 112); do '
    'head -c 8388608 /dev/urandom > "$1/opt/big/blob$i"; done'
)


def _mmdebstrap(mirror: str, rootfs: Path, big: bool) -> None:
    part = rootfs.with_name(rootfs.name + ".part.tar")
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--mode=root",
            "--variant=apt",
            *([HOOK_1G] if big else []),
            "bookworm",
            str(part),
            f"deb {mirror} bookworm main",
        ],
        check=True,
    )
    os.rename(part, rootfs)


def debian_base(big: bool = False) -> Path:
    """The base image's docker-archive, made if it is not cached yet."""
    out_dir = cache_dir() / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / ("debian-bookworm-apt-1g.tar" if big else "debian-bookworm-apt.tar")
    if out.exists():
        return out
    rootfs = out.with_name(out.stem + ".rootfs.tar")  # kept: mmdebstrap is the slow part
    if not rootfs.exists():
        _mmdebstrap(host_mirror(), rootfs, big)
    work = Path(tempfile.mkdtemp(prefix="vmbuild-bench-base-"))
    try:
        store = work / "store"
        tag = "bench-debian:12"
        _podman(store, "import", str(rootfs), tag)
        part = out.with_name(out.name + ".part")
        _podman(store, "save", "--format", "docker-archive", "-o", str(part), tag)
        os.rename(part, out)
        return out
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(work)], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
