"""Whiteouts: image form <-> overlayfs form, as tar rewrites."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.integration.images import layer_tar
from vmbuild.oci.overlay import from_overlay, to_overlay


def members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name.rstrip("/"): m for m in tar}


def test_round_trip(tmp_path: Path) -> None:
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
    with open(src, "rb") as f:
        to_overlay(f, tmp_path / "overlay.tar", "test")
    ov = members(tmp_path / "overlay.tar")
    assert ov["etc/passwd"].ischr() and (ov["etc/passwd"].devmajor, ov["etc/passwd"].devminor) == (
        0,
        0,
    )
    assert ov["opt"].isdir() and ov["opt"].pax_headers["SCHILY.xattr.trusted.overlay.opaque"] == "y"
    assert ov["var"].isdir()  # synthesised for its opaque marker
    assert not any(".wh." in n for n in ov)
    out = io.BytesIO()
    from_overlay(tmp_path / "overlay.tar", out, compression="none", mtime=1)
    (tmp_path / "back.tar").write_bytes(out.getvalue())
    back = members(tmp_path / "back.tar")
    assert set(back) == {
        "etc",
        "etc/.wh.passwd",
        "opt",
        "opt/.wh..wh..opq",
        "opt/new",
        "var",
        "var/.wh..wh..opq",
    }
    assert not any(
        k.startswith("SCHILY.xattr.trusted.overlay") for m in back.values() for k in m.pax_headers
    )
    assert all(m.mtime == 1 for m in back.values())
