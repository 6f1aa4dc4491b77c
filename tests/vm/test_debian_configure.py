"""configure = true: the packages are installed as ``dpkg --install`` installs them, as
root in the build VM (the image's own dpkg, offline), before runAsRoot in the same boot:
the Essential set is unpacked by the host and its preinsts run, then every other
package's preinst runs before its files appear, then the postinsts, dependencies first.

One build: ca-certificates and adduser (from the host's configured mirror, through a
local repository that also holds two test packages whose maintainer scripts record what
they saw)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, host_debs, serve, write_repo
from tests.support.cli import vmbuild_cli, write_spec

pytestmark = [pytest.mark.vm]

# each preinst records whether its own files, and its dependency's, are there yet
SAW = 'if [ -e "$1" ]; then echo present; else echo absent; fi'
BASE_PREINST = f"#!/bin/sh\nsaw() {{ {SAW}; }}\nsaw /usr/share/vmb-base/marker > /preinst-base\n"
APP_PREINST = (
    f"#!/bin/sh\nsaw() {{ {SAW}; }}\n"
    "{ saw /usr/share/vmb-app/marker; saw /usr/share/vmb-base/marker; } > /preinst-app\n"
)
# by the time its postinst runs, its dependency is configured
APP_POSTINST = "#!/bin/sh\ndpkg-query -W -f '${Status}\\n' vmb-base > /postinst-app\n"


def _repo(tmp_path: Path) -> tuple[Path, Keys]:
    test_debs = [
        build_deb(
            Pkg(
                "vmb-base",
                files={"usr/share/vmb-base/marker": b"base\n"},
                scripts={"preinst": BASE_PREINST},
            ),
            tmp_path,
        ),
        build_deb(
            Pkg(
                "vmb-app",
                fields={"Depends": "vmb-base"},
                files={"usr/share/vmb-app/marker": b"app\n"},
                scripts={"preinst": APP_PREINST, "postinst": APP_POSTINST},
            ),
            tmp_path,
        ),
    ]
    keys = Keys(tmp_path / "gnupg")
    debs = host_debs(["ca-certificates", "adduser"], tmp_path)
    write_repo(tmp_path / "www", [*debs, *test_debs], keys)
    return tmp_path / "www", keys


def test_installed_as_dpkg_install_does(tmp_path: Path) -> None:
    root, keys = _repo(tmp_path)
    out = tmp_path / "cfg.tar"
    with serve(root) as url:
        spec = write_spec(
            tmp_path,
            'name = "cfg"\ncopyToRoot = [{ deb = "ca-certificates" }, { deb = "adduser" },'
            ' { deb = "vmb-app" }]\n'
            'runAsRoot = "adduser --system --group --no-create-home svc"\n'
            f'[debian]\nconfigure = true\nmirror = "{url}"\nsuite = "{SUITE}"\n'
            f'keyring = "{keys.keyring}"\n',
        )
        # the shared cache: a cache dir of its own would build the guest kernel again
        proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as outer:
        layer = next(m for m in outer if m.name.endswith("layer.tar"))
        blob = outer.extractfile(layer)
        assert blob is not None
        with tarfile.open(fileobj=blob) as tar:
            names = {m.name.rstrip("/"): m for m in tar}

            def text(name: str) -> str:
                f = tar.extractfile(name)
                assert f is not None
                return f.read().decode()

            bundle = names["etc/ssl/certs/ca-certificates.crt"]  # made by its postinst
            assert bundle.isfile() and bundle.size > 100_000
            users, status = text("etc/passwd"), text("var/lib/dpkg/status")
            # the preinst ran before its package's files were unpacked, after its
            # dependency's; the postinst after its dependency was configured
            assert text("preinst-base") == "absent\n"
            assert text("preinst-app") == "absent\npresent\n"
            assert text("postinst-app") == "install ok installed\n"
            assert "usr/share/vmb-app/marker" in names
            assert "var/lib/dpkg/info/vmb-app.list" in names
            assert "var/log/dpkg.log" not in names  # its times would differ each build
    assert "\nsvc:" in users and users.startswith("root:")  # base-passwd's postinst, adduser
    assert "Package: ca-certificates\nStatus: install ok installed" in status
    assert "Package: vmb-app\nStatus: install ok installed" in status
    assert "install ok unpacked" not in status


def test_a_failed_preinst_fails_the_build_naming_it(tmp_path: Path) -> None:
    # Essential, so the host unpacks it and its preinst runs first thing in the VM
    bad = Pkg(
        "vmb-bad",
        fields={"Essential": "yes"},
        scripts={"preinst": "#!/bin/sh\necho refusing >&2\nexit 7\n"},
    )
    keys = Keys(tmp_path / "gnupg")
    write_repo(tmp_path / "www", [*host_debs([], tmp_path), build_deb(bad, tmp_path)], keys)
    out = tmp_path / "bad.tar"
    with serve(tmp_path / "www") as url:
        spec = write_spec(
            tmp_path,
            'name = "bad"\ncopyToRoot = [{ deb = "vmb-bad" }]\n'
            f'[debian]\nconfigure = true\nmirror = "{url}"\nsuite = "{SUITE}"\n'
            f'keyring = "{keys.keyring}"\n',
        )
        proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 4, proc.stderr
    said = "vmbuild: error: configure = true: the preinst of vmb-bad failed with status 7 -- "
    assert said in proc.stderr, proc.stderr
    assert "refusing" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("bad.tar*"))


def test_a_failed_postinst_is_named_from_dpkg_not_from_what_scripts_print(
    tmp_path: Path,
) -> None:
    """The guest's dpkg installs it; its postinst prints the words a failure would and
    the old marker line, for another package: the record names the real one."""
    forged = (
        "#!/bin/sh\necho 'vmbuild-preinst-failed base-files 9' >&2\n"
        "echo 'new other package pre-installation script subprocess returned error exit"
        " status 9' >&2\necho 'status: x : error : nothing' >&3 || true\nexit 3\n"
    )
    post = Pkg("vmb-post", scripts={"postinst": forged})
    keys = Keys(tmp_path / "gnupg")
    write_repo(tmp_path / "www", [*host_debs([], tmp_path), build_deb(post, tmp_path)], keys)
    out = tmp_path / "post.tar"
    with serve(tmp_path / "www") as url:
        spec = write_spec(
            tmp_path,
            'name = "post"\ncopyToRoot = [{ deb = "vmb-post" }]\n'
            f'[debian]\nconfigure = true\nmirror = "{url}"\nsuite = "{SUITE}"\n'
            f'keyring = "{keys.keyring}"\n',
        )
        proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 4, proc.stderr
    said = "vmbuild: error: configure = true: the postinst of vmb-post failed with status 3 -- "
    assert said in proc.stderr, proc.stderr
    assert not out.exists()
