"""The one-time kernel build and KVM probe: concurrent first uses make one entry.

The expensive parts are faked (a real kernel build takes minutes), and every test has
its own VMBUILD_CACHE_DIR: the real cache in ~/.cache/vmbuild is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO
from vmbuild import cache
from vmbuild.vm import accel, cloudkernel, kernel

DIGEST = "ab" * 32


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(where))
    return where


@pytest.fixture
def fake_kernel_build(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """kernel.build() with the compile replaced by a 0.3 s sleep; returns the call times."""
    calls: list[float] = []
    monkeypatch.setattr(kernel, "missing_build_tools", lambda: [])
    monkeypatch.setattr(kernel, "build_key", lambda: DIGEST)

    def slow_build(digest: str) -> None:
        calls.append(time.monotonic())
        time.sleep(0.3)
        with cache.publish(kernel.KIND, digest) as tmp:
            (tmp / "vmlinux").write_bytes(b"kernel")

    monkeypatch.setattr(kernel, "_build", slow_build)
    return calls


def in_threads(n: int, fn: object) -> list[object]:
    results: list[object] = [None] * n

    def run(i: int) -> None:
        results[i] = fn()  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_first_kernel_builds_wait_for_one(fake_kernel_build: list[float]) -> None:
    paths = in_threads(4, kernel.build)
    assert len(fake_kernel_build) == 1
    assert len(set(paths)) == 1
    assert Path(str(paths[0])).read_bytes() == b"kernel"


def test_concurrent_processes_build_the_kernel_once(tmp_path: Path, own_cache: Path) -> None:
    """Two vmbuild processes: flock across processes, not only threads."""
    counter = tmp_path / "builds"
    script = textwrap.dedent(
        f"""
        import logging, time
        from vmbuild import cache
        logging.basicConfig(level=logging.INFO)
        from vmbuild.vm import kernel
        kernel.missing_build_tools = lambda: []
        kernel.build_key = lambda: {DIGEST!r}
        def slow_build(digest):
            with open({str(counter)!r}, "a") as f:
                f.write("built\\n")
            time.sleep(1.0)
            with cache.publish(kernel.KIND, digest) as tmp:
                (tmp / "vmlinux").write_bytes(b"kernel")
        kernel._build = slow_build
        print(kernel.build())
        """
    )
    env = dict(os.environ, VMBUILD_CACHE_DIR=str(own_cache))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert counter.read_text() == "built\n"
    assert len({out for out, _ in outs}) == 1
    waited = b"".join(err for _, err in outs)
    assert b"waiting for another vmbuild that is building the guest kernel" in waited


def test_an_interrupted_kernel_build_leaves_no_half_entry(
    monkeypatch: pytest.MonkeyPatch, own_cache: Path
) -> None:
    monkeypatch.setattr(kernel, "missing_build_tools", lambda: [])
    monkeypatch.setattr(kernel, "build_key", lambda: DIGEST)

    def interrupted(digest: str) -> None:
        with cache.publish(kernel.KIND, digest) as tmp:
            (tmp / "vmlinux").write_bytes(b"half a kern")
            raise KeyboardInterrupt

    monkeypatch.setattr(kernel, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kernel.build()
    assert not (own_cache / "kernel" / DIGEST).exists()
    assert [p.name for p in (own_cache / "kernel").iterdir() if not p.name.endswith(".lock")] == []


def test_what_a_killed_builder_left_is_removed_by_the_next(
    fake_kernel_build: list[float], own_cache: Path
) -> None:
    """SIGKILL runs no cleanup: its half-filled temporary sibling stays, until the next build."""
    left = own_cache / "kernel" / f".{DIGEST[:12]}-killed"
    left.mkdir(parents=True)
    (left / "vmlinux").write_bytes(b"half")
    kernel.build()
    assert not left.exists()
    assert (own_cache / "kernel" / DIGEST / "vmlinux").read_bytes() == b"kernel"


def test_concurrent_first_kvm_probes_wait_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text("fake")
    monkeypatch.setattr(accel, "kvm_status", lambda: (True, "/dev/kvm opens"))
    probes: list[int] = []

    def slow_probe(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        probes.append(1)
        time.sleep(0.3)
        return subprocess.CompletedProcess(argv, 0, b"Kernel panic - not syncing: VFS\n", b"")

    chosen = in_threads(4, lambda: accel.choose("auto", str(qemu), Path("/k"), runner=slow_probe))
    assert len(probes) == 1
    assert {c.name for c in chosen} == {"kvm"}  # type: ignore[attr-defined]
    assert sum(c.probed_now for c in chosen) == 1  # type: ignore[attr-defined]


def test_a_garbled_probe_verdict_is_probed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text("fake")
    monkeypatch.setattr(accel, "kvm_status", lambda: (True, "/dev/kvm opens"))
    where = cache.entry(accel.KIND, accel.probe_key(str(qemu)))
    where.mkdir(parents=True)
    (where / "result.json").write_text("{not json")

    def boots(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 0, b"Kernel panic - not syncing: VFS\n", b"")

    chosen = accel.choose("auto", str(qemu), Path("/k"), runner=boots)
    assert chosen.name == "kvm" and chosen.probed_now


def test_concurrent_first_cloud_kernel_fetches_wait_for_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cloudkernel, "_package", lambda: ("linux-image-x-cloud", "1"))
    fetches: list[int] = []

    def slow_fetch(into: Path) -> None:
        fetches.append(1)
        time.sleep(0.3)
        (into / "vmlinuz").write_bytes(b"k")
        (into / "modules.cpio").write_bytes(b"m")

    monkeypatch.setattr(cloudkernel, "_fetch", slow_fetch)
    kernels = in_threads(3, cloudkernel.ensure)
    assert len(fetches) == 1
    assert len({k.path for k in kernels}) == 1  # type: ignore[attr-defined]
