"""The guest kernel: the user's, a cached build, a fresh build, or Debian's cloud kernel.

The preferred kernel is built once from Debian's ``linux-source-6.1`` tarball:
``make tinyconfig``, merge ``kernels/guest.config``, ``make bzImage``. It is
cached under the hash of the recipe, the fragment and the tarball's identity, so a new
fragment or a new linux-source package gives a new build. The build holds the cache
entry's lock (concurrent first builds wait for one) and is published only whole. Without
the source or a
compiler, Debian's cloud kernel (``linux-image-cloud-amd64``) is the fallback
(:mod:`vmbuild.vm.cloudkernel`; VMBUILD_GUEST_KERNEL=cloud forces it). ``--kernel PATH``
always wins.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vmbuild import cache, tempdirs
from vmbuild.errors import ToolMissing, VmbuildError
from vmbuild.resources import kernel_file
from vmbuild.run import run, spawn

log = logging.getLogger("vmbuild")

RECIPE = "tinyconfig+guest.config+bzImage v1"
SOURCE = Path(os.environ.get("VMBUILD_LINUX_SOURCE", "/usr/src/linux-source-6.1.tar.xz"))
KIND = "kernel"
BUILD_TOOLS = (
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("perl", "perl"),
)
# Lines a build prints (about 1,700 for this recipe), to turn progress into a percentage.
EXPECTED_LINES = 1700


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel image and what the guest needs to use it."""

    path: Path  # a PVH-capable vmlinux, or a bzImage
    origin: str  # "user", "built" or "cloud"
    modules: Path | None = None  # a cpio of modules to append to the initramfs (cloud)
    machine: str = "microvm"  # "microvm" (virtio-mmio) or "pc" (virtio-pci)


def estimate(cores: int | None = None) -> str:
    """How long the build takes here: the one estimate the message, doctor and README give.

    The compile scales with the cores; the figures are those measured on a 2-core
    machine, idle and busy.
    """
    n = cores or os.cpu_count() or 1
    low, high = max(1, round(6 / n)), max(2, round(18 / n))
    return f"about {low} minutes on {n} idle cores, up to {high} on busy ones"


def fragment() -> bytes:
    return kernel_file("guest.config")


def build_key() -> str:
    st = SOURCE.stat()
    return cache.key([RECIPE, fragment(), str(SOURCE), str(cache.file_identity(st))])


def cached_build() -> Path | None:
    """The built kernel in the cache (its PVH-bootable vmlinux), if it is there."""
    if not SOURCE.exists():
        return None
    image = cache.entry(KIND, build_key()) / "vmlinux"
    return image if image.exists() else None


def missing_build_tools() -> list[str]:
    """Debian packages the kernel build needs and the host lacks."""
    lacking = [pkg for prog, pkg in BUILD_TOOLS if not shutil.which(prog)]
    if not SOURCE.exists():
        lacking.append("linux-source-6.1")
    for header, pkg in (
        ("/usr/include/libelf.h", "libelf-dev"),
        ("/usr/include/openssl/ssl.h", "libssl-dev"),
    ):
        if not Path(header).exists():
            lacking.append(pkg)
    return lacking


def _progress(lines: int, started: float, final: bool = False) -> None:
    pct = min(99, lines * 100 // EXPECTED_LINES) if not final else 100
    elapsed = int(time.monotonic() - started)
    text = f"vmbuild: building the guest kernel: {pct:3d}% ({elapsed // 60}m{elapsed % 60:02d}s)"
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text + ("\n" if final else ""))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _make(src: Path, target: str, logf: Path, started: float) -> None:
    jobs = str(os.cpu_count() or 1)
    argv = ["make", "-C", str(src), "ARCH=x86_64", f"-j{jobs}", target]
    lines = 0
    last = 0.0
    with (
        logf.open("ab") as out,
        spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            lines += 1
            now = time.monotonic()
            if target == "bzImage" and now - last > (2 if sys.stderr.isatty() else 15):
                _progress(lines, started)
                last = now
        status = proc.wait()
    if status != 0:
        tail = logf.read_text(errors="replace").strip().splitlines()[-8:]
        raise VmbuildError(
            f"the guest kernel build failed (make {target}): " + " / ".join(tail),
            f"the full log was {logf}; fix the cause and run vmbuild again",
        )


def build() -> Path:
    """Build the guest kernel into the cache (once) and return its vmlinux.

    Concurrent callers (other vmbuild processes too) wait for the one that builds.
    """
    lacking = missing_build_tools()
    if lacking:
        raise ToolMissing(
            "cannot build the guest kernel: missing " + ", ".join(lacking),
            "install them: apt-get install " + " ".join(lacking),
        )
    digest = build_key()
    image = cache.entry(KIND, digest) / "vmlinux"
    waiting = "vmbuild: waiting for another vmbuild that is building the guest kernel"
    with cache.lock(KIND, digest, waiting):
        if not image.exists():
            _build(digest)
    return image


def _build(digest: str) -> None:
    """The expensive part: unpack, configure, make, publish into the cache entry."""
    sys.stderr.write(
        f"vmbuild: building the guest kernel from {SOURCE} (first use only, then cached; "
        f"{estimate()}; VMBUILD_GUEST_KERNEL=cloud boots Debian's cloud kernel instead)\n"
    )
    started = time.monotonic()
    with tempdirs.workdir("vmbuild-kernel-") as work:
        run(["tar", "-xf", SOURCE, "-C", work, "--strip-components=1"], what="tar (kernel source)")
        logf = work / "build.log"
        _make(work, "tinyconfig", logf, started)
        frag = work / "vmbuild.config"
        frag.write_bytes(fragment())
        run(
            [work / "scripts/kconfig/merge_config.sh", "-m", "-O", work, work / ".config", frag],
            cwd=work,
            capture=True,
            what="merge_config.sh",
        )
        _make(work, "olddefconfig", logf, started)
        _check_config(work / ".config")
        _make(work, "bzImage", logf, started)
        _progress(EXPECTED_LINES, started, final=True)
        with cache.publish(KIND, digest) as tmp:
            shutil.copyfile(work / "arch/x86/boot/bzImage", tmp / "bzImage")
            shutil.copyfile(work / ".config", tmp / "config")
            # QEMU loads an ELF vmlinux with a PVH note directly: no decompressor
            # running under emulation (a large part of a boot under TCG).
            run(["strip", "-o", tmp / "vmlinux", work / "vmlinux"], what="strip")


def _check_config(config: Path) -> None:
    """Every ``=y`` of the fragment must have survived olddefconfig."""
    have = set(config.read_text().splitlines())
    lost = [
        line
        for line in fragment().decode().splitlines()
        if line.endswith("=y") and line not in have
    ]
    if lost:
        raise VmbuildError(
            "the guest kernel config lost " + ", ".join(lost),
            "kernels/guest.config does not fit this linux-source",
        )
