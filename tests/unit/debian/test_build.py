"""configure = true's plan (debian/build): what the host unpacks, what the
guest's dpkg installs and in which order, and the script that does it."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from vmbuild.debian import build
from vmbuild.debian.build import DebContent, configure_script
from vmbuild.debian.debfile import DebError
from vmbuild.debian.lock import For, Lock, Locked

MIRROR = "http://127.0.0.1:1/debian"


def _locked(name: str, *depends: str, essential: bool = False) -> Locked:
    return Locked(name, "1", "amd64", f"pool/{name}.deb", 1, "0" * 64, depends, "", essential)


def _lock(*packages: Locked) -> Lock:
    return Lock(For("testing", "amd64", ()), "", packages)


def test_the_host_unpacks_the_essential_set_dpkg_and_what_they_need() -> None:
    lock = _lock(
        _locked("libc6"),
        _locked("base-files", essential=True),
        _locked("dpkg", "libc6", "tar"),
        _locked("tar", "libc6", essential=True),
        _locked("openssl", "libc6"),
        _locked("ca-certificates", "openssl"),
    )
    assert build._essential_closure(lock) == {"libc6", "base-files", "dpkg", "tar"}


def test_a_batch_ends_where_a_package_pre_depends_on_one_in_it() -> None:
    pre_depends = {
        "a": "",
        "b": "libc6 (>= 2.36)",  # before this batch: configured
        "c": "x | a:any (>= 1)",
        "d": "",
    }
    assert build._batches(["a", "b", "c", "d"], pre_depends) == [["a", "b"], ["c", "d"]]


def test_pre_depends_come_from_the_deb_control_file_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: p\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\n"
        "Pre-Depends: libc6 (>= 2.36) | libc6.1\nDescription: t\n"
    )
    deb = tmp_path / "p.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    got = build._pre_depends(deb, _locked("p"), MIRROR)
    assert got == "libc6 (>= 2.36) | libc6.1"
    assert [p for p in tmp_path.iterdir() if p.name not in ("root", "p.deb")] == []


def test_a_guest_deb_whose_control_file_names_another_package_is_refused(tmp_path: Path) -> None:
    """The guest's dpkg installs a .deb under its control file's name: it must be the
    index's."""
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: zzz-other\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: t\n"
    )
    deb = tmp_path / "p.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(DebError, match=f"p 1 .*{MIRROR}.*Package 'zzz-other'.* index 'p'"):
        build._pre_depends(deb, _locked("p"), MIRROR)


def test_relation_names_cover_alternatives_versions_and_arch_qualifiers() -> None:
    got = build._relation_names("libc6 (>= 2.36), perl:any | perl-base, awk")
    assert got == {"libc6", "perl", "perl-base", "awk"}


def test_a_release_date_is_the_source_date_epoch() -> None:
    assert build._epoch("Sat, 09 Nov 2024 10:02:07 UTC") == 1731146527
    assert build._epoch("") is None


def test_the_script_runs_host_preinsts_then_configures_then_installs_the_rest() -> None:
    debs = DebContent(_lock(), order=["base-files", "libc6:amd64"], architecture="amd64")
    debs.guest = [["openssl", "ca-certificates"], ["late"]]
    debs.guest_debs = {
        n: Path(f"/cache/{n}-sha.deb") for n in ("openssl", "ca-certificates", "late")
    }
    debs.source_date = 1731146527
    lines = configure_script(debs).splitlines()
    assert "SOURCE_DATE_EPOCH=1731146527" in lines[0]
    assert "DEBIAN_FRONTEND=noninteractive" in lines[0]
    preinsts = [line for line in lines if ".preinst" in line]
    assert "info/base-files.preinst" in preinsts[0]
    assert "DPKG_MAINTSCRIPT_PACKAGE=libc6 " in preinsts[1]
    assert "DPKG_MAINTSCRIPT_ARCH=amd64" in preinsts[1]
    at = lines.index("dpkg --configure -a")
    assert lines.index(preinsts[-1]) < at
    assert lines[at + 1] == (
        "dpkg --install /.vmbuild/step/debs/openssl-sha.deb"
        " /.vmbuild/step/debs/ca-certificates-sha.deb"
    )
    assert lines[at + 2] == "dpkg --install /.vmbuild/step/debs/late-sha.deb"
    assert lines[-1].startswith("rm -f /var/log/dpkg.log ")


def test_the_guest_installed_packages_are_not_in_the_host_tree() -> None:
    debs = DebContent(_lock())
    debs.guest = [["openssl"]]
    assert not debs.on_host("openssl") and debs.on_host("libc6")


def test_every_word_of_the_script_is_quoted() -> None:
    """A name is one word of the shell, whatever it holds (the names are checked before;
    this is the script's own guarantee)."""
    hostile = "cfg-inject;touch${IFS}/pwned-inject;"
    debs = DebContent(_lock(), order=[hostile, f"x:{hostile}"], architecture="amd64")
    debs.guest = [["p"]]
    debs.guest_debs = {"p": Path("/cache/p;touch x $(id).deb")}
    lines = configure_script(debs).splitlines()
    preinsts = [shlex.split(line) for line in lines if ".preinst" in line]
    first, second = preinsts
    assert f"/var/lib/dpkg/info/{hostile}.preinst" in first
    assert f"DPKG_MAINTSCRIPT_PACKAGE={hostile}" in first
    assert f"DPKG_MAINTSCRIPT_ARCH={hostile}" in second
    install = shlex.split(next(line for line in lines if line.startswith("dpkg --install")))
    assert install == ["dpkg", "--install", "/.vmbuild/step/debs/p;touch x $(id).deb"]


DPKG_SAYS = (
    "status: vmb-ok: unpacked",
    "status: /.vmbuild/step/debs/a.deb : error : new vmb-bad package pre-installation"
    " script subprocess returned error exit status 3",
    "status: vmb-x : error : installed vmb-x package post-installation script subprocess"
    " returned error exit status 2",
)


@pytest.mark.parametrize(
    ("fake_dpkg", "status", "said"),
    [
        # what the script prints is not dpkg's status line: the first real one counts
        ("echo 'vmb-forged preinst 9' >&3; echo 'status: x : error : new vmb-forged "
         "package pre-installation script subprocess returned error exit status 9'; "
         + "; ".join(f"echo '{line}' >&4" for line in DPKG_SAYS) + "; exit 1",
         1, "vmb-bad preinst 3\n"),
        ("echo 'status: p : error : dependency problems' >&4; exit 1", 1, ""),
        ("exit 0", 0, ""),
    ],
)  # fmt: skip
def test_a_failed_maintainer_script_is_said_on_fd_3(
    tmp_path: Path, fake_dpkg: str, status: int, said: str
) -> None:
    """dpkg's status lines (--status-fd) name the first script that failed, on fd 3 (the
    guest's record); the scripts' own output (dpkg's stdout, and fd 3 closed) cannot."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dpkg = bin_dir / "dpkg"
    dpkg.write_text(f"#!/bin/sh\n[ \"$1 $2\" = '--status-fd 4' ] || exit 99\n{fake_dpkg}\n")
    dpkg.chmod(0o755)
    note = tmp_path / "failed"
    script = build.FAILED_SCRIPT + "dpkg --install /x.deb\n"
    with open(note, "w") as fd3:
        ran = subprocess.run(
            ["bash", "-e", "-c", f"exec 3>&{fd3.fileno()}; {script}"],
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
            pass_fds=(fd3.fileno(),),
            capture_output=True,
            text=True,
        )
    assert ran.returncode == status, ran.stderr
    assert note.read_text() == said


def test_a_failed_host_preinst_is_said_on_fd_3() -> None:
    debs = DebContent(_lock(), order=["base-files"], architecture="amd64")
    line = next(x for x in configure_script(debs).splitlines() if ".preinst" in x)
    assert "install 3>&- || { s=$?; echo base-files preinst $s >&3; exit $s; }" in line
