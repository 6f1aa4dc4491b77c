"""configure = true: the packages' maintainer scripts run as root in the build VM
(the image's own dpkg, offline), before runAsRoot in the same boot."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli, write_spec

pytestmark = [pytest.mark.vm]


def test_postinst_ran(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        'name = "cfg"\ncopyToRoot = [{ deb = "ca-certificates" }, { deb = "adduser" }]\n'
        'runAsRoot = "adduser --system --group --no-create-home svc"\n'
        "[debian]\nconfigure = true\n",
    )
    out = tmp_path / "cfg.tar"
    # the shared cache: a cache dir of its own would build the guest kernel again
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as outer:
        layer = next(m for m in outer if m.name.endswith("layer.tar"))
        blob = outer.extractfile(layer)
        assert blob is not None
        with tarfile.open(fileobj=blob) as tar:
            names = {m.name.rstrip("/"): m for m in tar}
            bundle = names["etc/ssl/certs/ca-certificates.crt"]  # made by its postinst
            assert bundle.isfile() and bundle.size > 100_000
            passwd = tar.extractfile("etc/passwd")
            assert passwd is not None
            users = passwd.read().decode()
            status = tar.extractfile("var/lib/dpkg/status")
            assert status is not None
            text = status.read().decode()
    assert "\nsvc:" in users and users.startswith("root:")  # base-passwd's postinst, adduser
    assert "Package: ca-certificates\nStatus: install ok installed" in text
    assert "install ok unpacked" not in text
