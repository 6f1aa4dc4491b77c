"""``vmbuild version [--json]``: vmbuild's version, the guest kernel, the host tools."""

from __future__ import annotations

import argparse
import json
import mmap
import platform
import re
import shutil
from pathlib import Path
from typing import Any

from vmbuild.cli.common import add_command, package_version
from vmbuild.run import run

# host programs vmbuild runs (or hands images to), and how each says its version
TOOLS = {
    "qemu-system-x86_64": ["--version"],
    "fakeroot": ["--version"],
    "bash": ["--version"],
    "podman": ["--version"],
    "docker": ["--version"],
    "skopeo": ["--version"],
}


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "version",
        help="print vmbuild's version, the guest kernel's and the host tools'",
        examples=["vmbuild version", "vmbuild version --json | jq .guestKernel"],
    )
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_version)


def kernel_version(path: Path) -> str | None:
    """The ``Linux version ...`` banner inside a kernel image (vmlinux or bzImage's
    uncompressed setup), if it can be found without decompressing."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            found = re.search(rb"Linux version (\S+)", m)
            return bytes(found.group(1)).decode(errors="replace") if found else None
    except (OSError, ValueError):
        return None


def guest_kernel() -> dict[str, Any]:
    """The cached guest kernel (never builds one)."""
    from vmbuild.vm import kernel

    built = kernel.cached_build()
    if built is None:
        return {"built": False, "source": str(kernel.SOURCE)}
    return {"built": True, "path": str(built), "version": kernel_version(built)}


def tool_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, argv in TOOLS.items():
        path = shutil.which(name)
        if path is None:
            found[name] = None
            continue
        proc = run([path, *argv], capture=True, check=False, timeout=10)
        lines = (proc.stdout or proc.stderr).decode(errors="replace").strip().splitlines()
        found[name] = lines[0] if lines else "unknown"
    return found


def cmd_version(args: argparse.Namespace) -> int:
    kern = guest_kernel()
    tools = tool_versions()
    info: dict[str, Any] = {
        "version": package_version(),
        "python": platform.python_version(),
        "guestKernel": kern,
        "tools": tools,
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"vmbuild {info['version']} (Python {info['python']})")
    if kern["built"]:
        print(f"guest kernel: {kern['version'] or 'unknown version'} ({kern['path']})")
    else:
        print(f"guest kernel: not built yet (from {kern['source']})")
    for name, text in tools.items():
        print(f"{name}: {text or 'not installed'}")
    return 0
