"""configure = true's side in vm/: the .deb files' disk and what a failure names (the
guest's status record says it: tests/unit/vm/test_status_record.py)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from vmbuild.vm.debdisk import debs_tar, failure


def test_the_record_names_the_package_and_script() -> None:
    said = ("vmb-bad", "postinst", "2")
    assert failure(said, 1) == "configure = true: the postinst of vmb-bad failed with status 2"


@pytest.mark.parametrize(
    "said", [(), ("vmb-bad", "preinst"), ("vmb-bad", "rm -rf", "2"), ("B@d", "preinst", "1")]
)
def test_otherwise_the_status_is_said(said: tuple[str, ...]) -> None:
    assert failure(said, 2) == (
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
