"""podman, buildah and skopeo for checking outputs, each with throwaway storage."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO


def _checked(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """Run ARGV; on failure, an AssertionError that shows what the tool printed."""
    done: subprocess.CompletedProcess[bytes] = subprocess.run(
        argv,
        capture_output=True,
        timeout=300,
        **kwargs,  # type: ignore[call-overload]
    )
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")[-2000:]
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{err}")
    return done


class Containers:
    """podman/buildah/skopeo with their own throwaway storage under a temp dir."""

    def __init__(self, root: Path, run: Path | None = None):
        """Storage under ``root``; the run root in ``run`` if given (podman refuses one
        over 50 characters, which an xdist worker's temp dirs reach)."""
        self.root = root
        runroot = run if run is not None else root / "run"
        self.store = ["--root", str(root / "root"), "--runroot", str(runroot)]
        # podman's own --tmpdir too: libpod's state dir (/run/libpod by default) is shared
        # by every podman on the machine, and `system reset` of one store removed it
        # under another's `load`.
        self.podman_argv = ["podman", *self.store, "--tmpdir", str(root / "tmp")]

    def podman(
        self, *args: str, input: bytes | None = None, stdin: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = [*self.podman_argv, "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"]
        return _checked([*argv, *args], input=input, stdin=stdin)

    def buildah(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return _checked(["buildah", *self.store, "--storage-driver", "vfs", *args])

    def run_image(self, archive: Path, *command: str) -> str:
        """``buildah from docker-archive:ARCHIVE`` then run COMMAND in it; its stdout."""
        ctr = self.buildah("from", "-q", f"docker-archive:{archive}").stdout.decode().strip()
        try:
            out = self.buildah("run", "--isolation", "chroot", ctr, "--", *command)
            return out.stdout.decode()
        finally:
            self.buildah("rm", ctr)


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return _checked(["skopeo", *args])
