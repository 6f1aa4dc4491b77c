"""Choosing the accelerator: the KVM probe with QEMU faked, and its cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmbuild.errors import StepFailed, VmbuildError
from vmbuild.vm import accel


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def qemu(tmp_path: Path) -> str:
    q = tmp_path / "qemu-system-x86_64"
    q.write_text("fake")
    return str(q)


@pytest.fixture
def kvm_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "kvm"
    dev.write_text("")
    monkeypatch.setattr(accel, "KVM", dev)


class FakeQemu:
    """Stands in for run(): records calls, answers like a QEMU that booted, hung or broke."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(argv)
        if self.behaviour == "hang":
            raise StepFailed("the KVM probe timed out after 6.0 s", 124)
        if self.behaviour == "boots":
            out = b"VFS: Unable to mount root fs\nKernel panic - not syncing: VFS\n"
            return subprocess.CompletedProcess(argv, 0, out, b"")
        err = b"qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0\n"
        return subprocess.CompletedProcess(argv, 1, b"", err)


def test_tcg_when_asked_without_probing(qemu: str) -> None:
    fake = FakeQemu("boots")
    assert accel.choose("tcg", qemu, Path("/k"), runner=fake).name == "tcg"
    assert fake.calls == []


def test_no_kvm_device_means_tcg(
    qemu: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accel, "KVM", tmp_path / "absent")
    fake = FakeQemu("boots")
    chosen = accel.choose("auto", qemu, Path("/k"), runner=fake)
    assert (chosen.name, fake.calls) == ("tcg", [])
    assert "no /dev/kvm" in chosen.reason
    with pytest.raises(VmbuildError, match="KVM requested"):
        accel.choose("kvm", qemu, Path("/k"), runner=fake)


@pytest.mark.usefixtures("kvm_opens")
def test_a_kernel_that_boots_under_kvm_means_kvm(qemu: str) -> None:
    fake = FakeQemu("boots")
    chosen = accel.choose("auto", qemu, Path("/k/vmlinux"), runner=fake)
    assert chosen.name == "kvm" and chosen.probed_now
    (call,) = fake.calls
    assert call[call.index("-accel") + 1] == "kvm" and "/k/vmlinux" in call
    assert "host" not in call


@pytest.mark.usefixtures("kvm_opens")
def test_a_hang_under_kvm_means_tcg_and_says_why(qemu: str) -> None:
    chosen = accel.choose("auto", qemu, Path("/k"), runner=FakeQemu("hang"))
    assert chosen.name == "tcg" and "hung" in chosen.reason


@pytest.mark.usefixtures("kvm_opens")
def test_a_qemu_error_under_kvm_means_tcg_with_its_message(qemu: str) -> None:
    chosen = accel.choose("auto", qemu, Path("/k"), runner=FakeQemu("broken"))
    assert chosen.name == "tcg" and "MSR 0x10a" in chosen.reason


@pytest.mark.usefixtures("kvm_opens")
def test_the_verdict_is_cached_until_forgotten(qemu: str) -> None:
    fake = FakeQemu("hang")
    first = accel.choose("auto", qemu, Path("/k"), runner=fake)
    second = accel.choose("auto", qemu, Path("/k"), runner=fake)
    assert len(fake.calls) == 1
    assert (second.name, second.probed_now) == (first.name, False)
    assert second.reason.endswith("(cached)")
    accel.forget(qemu)
    accel.choose("auto", qemu, Path("/k"), runner=fake)
    assert len(fake.calls) == 2


def test_unknown_accelerator_is_refused(qemu: str) -> None:
    with pytest.raises(VmbuildError, match="unknown accelerator"):
        accel.choose("hvf", qemu, Path("/k"), runner=FakeQemu("boots"))
