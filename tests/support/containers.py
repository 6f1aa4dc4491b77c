"""podman, buildah and skopeo for checking outputs, each with throwaway storage."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO


class Containers:
    """podman/buildah/skopeo with their own throwaway storage under a temp dir."""

    def __init__(self, root: Path):
        self.root = root
        self.store = ["--root", str(root / "root"), "--runroot", str(root / "run")]

    def podman(
        self, *args: str, input: bytes | None = None, stdin: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "podman",
                *self.store,
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                *args,
            ],
            input=input,
            stdin=stdin,
            capture_output=True,
            check=True,
            timeout=300,
        )

    def buildah(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["buildah", *self.store, "--storage-driver", "vfs", *args],
            capture_output=True,
            check=True,
            timeout=300,
        )

    def run_image(self, archive: Path, *command: str) -> str:
        """``buildah from docker-archive:ARCHIVE`` then run COMMAND in it; its stdout."""
        ctr = self.buildah("from", "-q", f"docker-archive:{archive}").stdout.decode().strip()
        try:
            out = self.buildah("run", "--isolation", "chroot", ctr, "--", *command)
            return out.stdout.decode()
        finally:
            self.buildah("rm", ctr)


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, check=True, timeout=300)
