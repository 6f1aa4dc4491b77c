"""Whiteouts: image form <-> overlayfs form, as tar rewrites."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.support.images import layer_tar
from vmbuild.oci.layer import open_tar
from vmbuild.oci.overlay import from_overlay
from vmbuild.oci.retar import write_entries
from vmbuild.oci.rootfs import Rootfs


def lowers(tars: list[tarfile.TarFile], out: Path) -> list[Path]:
    """Each layer's overlay lower (``Rootfs.lower``, as vm/lowers.py makes them) as a tar."""
    fs = Rootfs()
    paths = []
    for n, tar in enumerate(tars):
        path = out / f"lower{n}.tar"
        with open(path, "wb") as f, open_tar(f) as sink:
            write_entries(fs.lower(fs.apply(tar, n, f"base layer {n + 1}")), sink, None)
        paths.append(path)
    return paths


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name.rstrip("/"): m for m in tar}


def test_round_trip(tmp_path: Path) -> None:
    base = layer_tar(
        tmp_path / "base.tar",
        [
            ("etc", "d", ""),
            ("etc/passwd", "f", "root"),
            ("opt", "d", ""),
            ("opt/old", "f", "o"),
            ("var", "d", ""),
            ("var/lib", "d", ""),
            ("var/lib/x", "f", "x"),
        ],
    )
    src = layer_tar(
        tmp_path / "layer.tar",
        [
            ("etc", "d", ""),
            ("etc/.wh.passwd", "w", ""),
            ("opt", "o", ""),
            ("opt/new", "f", "n"),
            ("var/.wh..wh..opq", "w", ""),
        ],
    )
    with tarfile.open(base) as t0, tarfile.open(src) as t1:
        overlay = lowers([t0, t1], tmp_path)[1]
    ov = members(overlay)
    for gone in ("etc/passwd", "opt/old", "var/lib"):  # whiteouts as 0:0 devices
        assert ov[gone].ischr() and (ov[gone].devmajor, ov[gone].devminor) == (0, 0)
    assert ov["opt"].isdir() and ov["var"].isdir() and ov["opt/new"].isfile()
    assert not any(".wh." in n for n in ov)
    out = io.BytesIO()
    from_overlay(overlay, out, compression="none", mtime=1)
    (tmp_path / "back.tar").write_bytes(out.getvalue())
    back = members(tmp_path / "back.tar")
    assert set(back) == {
        "etc",
        "etc/.wh.passwd",
        "opt",
        "opt/.wh.old",
        "opt/new",
        "var",
        "var/.wh.lib",
    }
    assert not any(
        k.startswith("SCHILY.xattr.trusted.overlay") for m in back.values() for k in m.pax_headers
    )
    assert all(m.mtime == 1 for m in back.values())


def test_opaque_xattr_becomes_a_marker(tmp_path: Path) -> None:
    upper = tmp_path / "upper.tar"
    with tarfile.open(upper, "w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("opt")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tar.addfile(ti)
    out = io.BytesIO()
    from_overlay(upper, out, compression="none", mtime=1)
    (tmp_path / "back.tar").write_bytes(out.getvalue())
    back = members(tmp_path / "back.tar")
    assert set(back) == {"opt", "opt/.wh..wh..opq"}
    assert not back["opt"].pax_headers


def test_no_lower_holds_a_name_below_a_symlink(tmp_path: Path) -> None:
    """The lower of ``a/x`` above ``a -> /tmp`` puts x where the link points."""
    l0 = layer_tar(tmp_path / "l0.tar", [("a", "l", "/tmp")])
    l1 = layer_tar(tmp_path / "l1.tar", [("a/x", "f", "X"), ("b", "d", ""), ("b/.wh.c", "w", "")])
    with tarfile.open(l0) as t0, tarfile.open(l1) as t1:
        ov = members(lowers([t0, t1], tmp_path)[1])
    assert set(ov) == {"tmp", "tmp/x", "b"}  # no whiteout for a name no lower layer has
    assert ov["tmp"].isdir() and (ov["tmp"].mode, ov["tmp"].uid) == (0o755, 0)
