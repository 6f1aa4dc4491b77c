"""Machine and `vm run` failures that need no guest: clear errors, nothing left behind."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from vmbuild.__main__ import main
from vmbuild.cli.vm import _disk
from vmbuild.errors import ToolMissing, VmbuildError
from vmbuild.vm import Disk, Machine, accel, bootkernel, initramfs, kernel, keys, workdir


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp


def hide(monkeypatch: pytest.MonkeyPatch, *programs: str) -> None:
    real = shutil.which

    def which(name: str, *args: Any, **kw: Any) -> str | None:
        return None if name in programs else real(name, *args, **kw)

    monkeypatch.setattr(shutil, "which", which)


@pytest.fixture
def fake_guest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Kernel, initramfs, keys and accelerator without building or probing anything."""
    k = tmp_path / "vmlinux"
    k.write_bytes(b"")
    monkeypatch.setattr(bootkernel, "resolve", lambda path=None: kernel.Kernel(k, "built"))
    monkeypatch.setattr(keys, "load", lambda: None)
    monkeypatch.setattr(
        initramfs, "ensure", lambda _keys: initramfs.Initramfs(tmp_path / "i.cpio", "x")
    )
    monkeypatch.setattr(accel, "choose", lambda *a, **kw: accel.Accel("tcg", "test"))


def test_missing_qemu_says_what_to_install(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, "qemu-system-x86_64")
    with pytest.raises(ToolMissing, match="qemu-system-x86_64") as info, Machine():
        pass
    assert info.value.hint and "apt-get install qemu-system-x86" in info.value.hint
    assert list(private_tmp.iterdir()) == []


@pytest.mark.usefixtures("fake_guest")
def test_missing_mkfs_says_what_to_install_and_leaves_nothing(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, "mkfs.ext4")
    with pytest.raises(ToolMissing, match=r"mkfs\.ext4") as info, Machine():
        pass
    assert info.value.hint and "e2fsprogs" in info.value.hint
    assert list(private_tmp.iterdir()) == []


def test_missing_user_kernel_is_named() -> None:
    with pytest.raises(VmbuildError, match="kernel /nonexistent/bzImage does not exist"):
        bootkernel.resolve(Path("/nonexistent/bzImage"))


def test_no_kernel_and_no_way_to_build_one_says_what_to_install(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel, "SOURCE", Path("/nonexistent/linux-source-6.1.tar.xz"))
    hide(monkeypatch, "apt-get", "apt-cache")
    with pytest.raises(ToolMissing) as info:
        bootkernel.resolve(None)
    assert info.value.hint and "linux-source-6.1" in info.value.hint


def test_bad_sizes_and_disks_are_refused_before_booting(tmp_path: Path) -> None:
    with pytest.raises(VmbuildError, match="too small"):
        Machine(memory_mib=16)
    with pytest.raises(VmbuildError, match="too small"):
        Machine(disk_size_mib=1)
    with pytest.raises(VmbuildError, match="does not exist"):
        Machine(disks=[Disk(tmp_path / "nope.img")])


def test_disk_argument_parsing() -> None:
    assert _disk("/a/b.img") == Disk(Path("/a/b.img"))
    assert _disk("/a/b.img:ro") == Disk(Path("/a/b.img"), readonly=True)
    assert _disk("/a/b:c.img") == Disk(Path("/a/b:c.img"))


def test_cli_without_a_command_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vm", "run", "--"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vmbuild: error: no command given") and err.count("\n") == 1


def test_cli_with_a_missing_disk_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vm", "run", "--disk", "/nonexistent.img:ro", "--", "true"]) == 1
    assert "disk /nonexistent.img does not exist" in capsys.readouterr().err


def test_scratch_disk_is_sparse_ext4(tmp_path: Path) -> None:
    img = tmp_path / "s.img"
    workdir.make_scratch(img, 64)
    assert img.stat().st_size == 64 * 2**20
    assert img.stat().st_blocks * 512 < 8 * 2**20
    with img.open("rb") as f:
        f.seek(1024 + 0x38)
        assert f.read(2) == b"\x53\xef"  # the ext2/3/4 superblock magic
