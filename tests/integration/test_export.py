"""exportImage on the host: whiteouts, opaque dirs, shadowing, many layers, bad layers."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.containers import skopeo
from tests.support.images import image_from_layers, layer_tar
from vmbuild.oci.compress import decompressor, sniff


def export(tmp_path: Path, image: Path, *extra: str) -> Path:
    spec = tmp_path / "export.toml"
    spec.write_text(f'function = "exportImage"\nfromImage = "{image}"\n' + "".join(extra))
    out = tmp_path / "export.tar"
    proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def listing(tar_path: Path) -> dict[str, tuple[str, str]]:
    out = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            kind = "d" if m.isdir() else "l" if m.issym() else "h" if m.islnk() else "f"
            data = ""
            if m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                data = f.read().decode()
            out[m.name.rstrip("/")] = (kind, data or m.linkname)
    return out


def stacked(tmp_path: Path) -> Path:
    l1 = layer_tar(
        tmp_path / "l1.tar",
        [
            ("etc", "d", ""),
            ("etc/keep", "f", "base"),
            ("etc/gone", "f", "x"),
            ("opt", "d", ""),
            ("opt/old", "f", "old"),
            ("opt/sub", "d", ""),
            ("opt/sub/f", "f", "y"),
            ("var", "d", ""),
            ("var/lib", "d", ""),
            ("var/lib/data", "f", "d"),
            ("link-target", "f", "t"),
            ("hl", "h", "link-target"),
        ],
    )
    l2 = layer_tar(
        tmp_path / "l2.tar",
        [
            ("etc", "d", ""),
            ("etc/.wh.gone", "w", ""),
            ("etc/keep", "f", "changed"),
            ("opt", "o", ""),
            ("opt/new", "f", "new"),
            ("var", "f", "var is a file now"),
            ("rel", "l", "etc/keep"),
        ],
    )
    return image_from_layers(tmp_path / "image.tar", [l1, l2])


EXPECTED = {
    "etc": ("d", ""),
    "etc/keep": ("f", "changed"),
    "opt": ("d", ""),
    "opt/new": ("f", "new"),
    "var": ("f", "var is a file now"),
    "link-target": ("f", "t"),
    "hl": ("h", "link-target"),
    "rel": ("l", "etc/keep"),
}


def test_whiteouts_opaque_and_shadowing(tmp_path: Path) -> None:
    out = export(tmp_path, stacked(tmp_path))
    got = listing(out)
    # the hard link pair is re-pointed so the first name in order carries the data
    assert got.pop("hl") == ("f", "t") and got.pop("link-target") == ("h", "hl")
    expected = dict(EXPECTED)
    del expected["hl"], expected["link-target"]
    assert got == expected
    again = export(tmp_path, stacked(tmp_path))
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.tools
def test_agrees_with_umoci(tmp_path: Path) -> None:
    image = stacked(tmp_path)
    out = export(tmp_path, image)
    skopeo("copy", f"docker-archive:{image}", f"oci:{tmp_path / 'oci'}:1")
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:1", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    rootfs = tmp_path / "bundle" / "rootfs"
    unpacked = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    assert unpacked == sorted(listing(out))
    for name, (kind, data) in listing(out).items():
        p = rootfs / name
        if kind in "fh":
            assert p.read_text() == (data if kind == "f" else (rootfs / data).read_text())
        elif kind == "l":
            assert os.readlink(p) == data


def test_130_layers(tmp_path: Path) -> None:
    layers = []
    for i in range(130):
        members: list[tuple[str, str, bytes | str]] = [("d", "d", ""), (f"d/f{i}", "f", str(i))]
        if i:
            members.append((f"d/.wh.f{i - 1}", "w", ""))
        layers.append(layer_tar(tmp_path / f"l{i}.tar", members))
    out = export(tmp_path, image_from_layers(tmp_path / "many.tar", layers))
    assert listing(out) == {"d": ("d", ""), "d/f129": ("f", "129")}


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../escape", "f", "x"), "climbs out"),
        (("/abs", "f", "x"), "absolute path"),
        (("up", "l", "../../etc/passwd"), "points outside"),
        (("dangling", "h", "missing"), "has no target"),
    ],
)
def test_unsafe_layers_are_refused(
    tmp_path: Path, member: tuple[str, str, str], message: str
) -> None:
    bad = layer_tar(tmp_path / "bad.tar", [("ok", "f", "fine")])
    with tarfile.open(bad, "a") as tar:  # tarfile itself would refuse some of these names
        ti = tarfile.TarInfo(member[0])
        if member[1] == "l":
            ti.type, ti.linkname = tarfile.SYMTYPE, member[2]
        elif member[1] == "h":
            ti.type, ti.linkname = tarfile.LNKTYPE, member[2]
        tar.addfile(ti)
    image = image_from_layers(tmp_path / "image.tar", [bad])
    spec = tmp_path / "export.toml"
    spec.write_text(f'function = "exportImage"\nfromImage = "{image}"\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.tar").exists()


# --- --compress and --format: the tar is compressed as asked; it is not an image ---------


def _export_spec(tmp_path: Path) -> Path:
    layer = layer_tar(tmp_path / "l.tar", [("etc", "d", ""), ("etc/hello", "f", "hi")])
    image = image_from_layers(tmp_path / "base.tar", [layer])
    spec = tmp_path / "export.toml"
    spec.write_text(f'function = "exportImage"\nfromImage = "{image}"\n')
    return spec


@pytest.mark.parametrize(
    ("compress", "magic", "name"),
    [("zstd", b"\x28\xb5\x2f\xfd", "rootfs.tar.zst"), ("gzip", b"\x1f\x8b", "rootfs.tar.gz")],
)
def test_compress_compresses_the_tar(
    tmp_path: Path, compress: str, magic: bytes, name: str
) -> None:
    """`--compress zstd --out rootfs.tar.zst` wrote an uncompressed tar."""
    spec = _export_spec(tmp_path)
    plain = tmp_path / "rootfs.tar"
    assert vmbuild_cli("build", spec, "--out", plain).returncode == 0
    assert plain.read_bytes()[257:262] == b"ustar"  # uncompressed unless asked
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", compress)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert out.read_bytes().startswith(magic)
    with open(out, "rb") as f, decompressor(f, sniff(magic)) as tar:
        assert tar.read() == plain.read_bytes()
    default = vmbuild_cli("build", spec, "--compress", compress, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == name  # the default name says the compression


def test_an_uncompressed_export_named_gz_is_warned_about(tmp_path: Path) -> None:
    proc = vmbuild_cli("build", _export_spec(tmp_path), "--out", tmp_path / "r.tar.gz")
    assert proc.returncode == 0, proc.stderr
    assert "looks gzip, but the archive is uncompressed" in proc.stderr


@pytest.mark.parametrize("fmt", ["oci", "oci-archive"])
def test_an_oci_format_is_refused(tmp_path: Path, fmt: str) -> None:
    """`--format oci --out layout` wrote a plain tar named like a layout."""
    out = tmp_path / "layout"
    proc = vmbuild_cli("build", _export_spec(tmp_path), "--out", out, "--format", fmt)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("vmbuild: error: exportImage writes a root filesystem tar") and (
        f"--format {fmt}" in line
    ), line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.tar", "export.toml", "l.tar"]
