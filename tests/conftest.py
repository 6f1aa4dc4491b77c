"""Shared fixtures: CLI runner, isolated podman/buildah storage, image helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parent.parent


def vmbuild_cli(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vmbuild ARGS`` and capture its output as text."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vmbuild", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=900,
        check=False,
    )


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


@pytest.fixture
def containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    root = tmp_path_factory.mktemp("containers")
    c = Containers(root)
    yield c
    subprocess.run(
        ["buildah", *c.store, "--storage-driver", "vfs", "rm", "-a"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        ["podman", *c.store, "--storage-driver", "vfs", "system", "reset", "-f"],
        capture_output=True,
        check=False,
    )
    subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False, capture_output=True)


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, check=True, timeout=300)
