"""configure = true's side in vm/: the .deb files' disk and what a failure names."""

from __future__ import annotations

import tarfile
from pathlib import Path

from vmbuild.vm.debdisk import debs_tar, failure

DPKG_PREINST = """\
Preparing to unpack .../abc.deb ...
dpkg: error processing archive /.vmbuild/step/debs/abc.deb (--install):
 new vmb-bad package pre-installation script subprocess returned error exit status 3
Errors were encountered while processing:
 /.vmbuild/step/debs/abc.deb
"""
DPKG_POSTINST = """\
Setting up vmb-bad (1.0) ...
dpkg: error processing package vmb-bad (--install):
 installed vmb-bad package post-installation script subprocess returned error exit status 2
dpkg: dependency problems prevent configuration of vmb-app:
"""


def test_a_failed_preinst_names_its_package() -> None:
    assert (
        failure(DPKG_PREINST, 1) == "configure = true: the preinst of vmb-bad failed with status 3"
    )


def test_a_failed_postinst_names_its_package() -> None:
    assert failure(DPKG_POSTINST, 1) == (
        "configure = true: the postinst of vmb-bad failed with status 2"
    )


def test_a_host_unpacked_preinst_that_failed_names_its_package() -> None:
    got = failure("...\nvmbuild-preinst-failed base-files 5\n", 5)
    assert got == "configure = true: the preinst of base-files failed with status 5"


def test_otherwise_the_status_is_said() -> None:
    assert failure("dpkg: something else\n", 2) == (
        "configure = true: installing the Debian packages failed with status 2"
    )


def test_the_disk_is_a_plain_tar_of_the_debs_by_name(tmp_path: Path) -> None:
    a, b = tmp_path / "aa.deb", tmp_path / "bb.deb"
    a.write_bytes(b"a" * 1000)
    b.write_bytes(b"b")
    out = debs_tar([a, b], tmp_path / "debs.tar")
    assert out.stat().st_size % 512 == 0
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["aa.deb", "bb.deb"]
        assert all(m.uid == 0 and m.mtime == 0 for m in members)
        got = tar.extractfile("aa.deb")
        assert got is not None and got.read() == b"a" * 1000
