"""Shared fixtures: isolated podman/buildah storage (helpers live in tests/support)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.containers import Containers


@pytest.fixture(autouse=True)
def step_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own step cache: a root step a test runs must boot its VM."""
    monkeypatch.setenv("VMBUILD_STEP_CACHE", str(tmp_path_factory.mktemp("steps")))


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
        [*c.podman_argv, "--storage-driver", "vfs", "system", "reset", "-f"],
        capture_output=True,
        check=False,
    )
    subprocess.run(["chmod", "-R", "u+rwX", str(root)], check=False, capture_output=True)
