"""buildImage outputs checked with the real tools: skopeo, umoci, podman, buildah."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.containers import Containers, skopeo
from tests.support.images import multi_image_archive, rich_tree

pytestmark = pytest.mark.tools


def build(tmp_path: Path, spec_text: str, *extra: str, out_name: str = "out.tar.gz") -> Path:
    spec = tmp_path / "image.toml"
    spec.write_text(spec_text)
    out = tmp_path / out_name
    proc = vmbuild_cli("build", spec, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    return out


def gunzip(path: Path) -> Path:
    plain = path.with_suffix("").with_suffix(".tar") if path.suffix == ".gz" else path
    with gzip.open(path) as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


def unpack_with_umoci(tmp_path: Path, oci_ref: str) -> Path:
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", oci_ref, str(bundle)], check=True, capture_output=True
    )
    return bundle / "rootfs"


def check_rich_rootfs(rootfs: Path) -> None:
    assert (rootfs / "bin" / "tool").read_text() == "#!/bin/sh\necho tool\n"
    assert stat.S_IMODE((rootfs / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "etc" / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((rootfs / "setuid").stat().st_mode) == 0o4755
    a, b = (rootfs / "etc" / "app.conf").stat(), (rootfs / "etc" / "app.conf.link").stat()
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert os.readlink(rootfs / "bin" / "conf") == "../etc/app.conf"
    assert os.readlink(rootfs / "bin" / "abs-conf") == "/etc/app.conf"
    assert (rootfs / "empty").is_dir() and not any((rootfs / "empty").iterdir())
    assert os.getxattr(rootfs / "bin" / "tool", "user.note") == b"kept"
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in rootfs.rglob("*")}
    assert owners == {(1000, 100)}
    long = next((rootfs / "usr" / "share").rglob("f" * 90))
    assert long.read_text() == "long name\n"


RICH = """
name = "rich"
tag = "v1"
copyToRoot = "root"
uid = 1000
gid = 100
config = { Cmd = ["/bin/tool"], Env = ["A=1"], Labels = { "x" = "y" } }
"""


def test_docker_archive_with_skopeo_umoci_podman(tmp_path: Path, containers: Containers) -> None:
    rich_tree(tmp_path / "root")
    out = build(tmp_path, RICH)
    plain = gunzip(out)
    info = json.loads(skopeo("inspect", f"docker-archive:{plain}").stdout)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Env"] == ["A=1"] and info["Labels"] == {"x": "y"}
    assert len(info["Layers"]) == 1
    skopeo("copy", f"docker-archive:{plain}", f"oci:{tmp_path / 'oci'}:v1")
    check_rich_rootfs(unpack_with_umoci(tmp_path, f"{tmp_path / 'oci'}:v1"))
    loaded = containers.podman("load", "-i", str(plain)).stdout.decode()
    assert "rich:v1" in loaded
    inspect = json.loads(containers.podman("image", "inspect", "rich:v1").stdout)
    assert inspect[0]["Config"]["Cmd"] == ["/bin/tool"]


def test_oci_layout_and_archive(tmp_path: Path) -> None:
    rich_tree(tmp_path / "root")
    layout = build(tmp_path, RICH, "--format", "oci", out_name="layout")
    assert (layout / "oci-layout").is_file()
    info = json.loads(skopeo("inspect", f"oci:{layout}:v1").stdout)
    assert len(info["Layers"]) == 1
    check_rich_rootfs(unpack_with_umoci(tmp_path, f"{layout}:v1"))
    archive = build(
        tmp_path, RICH, "--format", "oci-archive", "--compress", "zstd", out_name="image.oci.tar"
    )
    raw = json.loads(skopeo("inspect", "--raw", f"oci-archive:{archive}:v1").stdout)
    assert raw["layers"][0]["mediaType"].endswith("tar+zstd")


def test_base_image_layers_are_kept_and_env_merged(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "from-base").write_text("base\n")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "from-top").write_text("top\n")
    base = build(
        tmp_path,
        'name = "base"\ntag = "1"\ncopyToRoot = "base"\nconfig = { Env = '
        '["PATH=/bin", "KEEP=base"] }\n',
        out_name="base.tar.gz",
    )
    derived = build(
        tmp_path,
        f'name = "derived"\ntag = "2"\nfromImage = "{base.name}"\n'
        'copyToRoot = "top"\nconfig = { Env = ["PATH=/usr/bin:/bin", "NEW=1"] }\n',
    )
    base_info = json.loads(skopeo("inspect", f"docker-archive:{gunzip(base)}").stdout)
    info = json.loads(skopeo("inspect", f"docker-archive:{gunzip(derived)}").stdout)
    assert info["Layers"][0] == base_info["Layers"][0] and len(info["Layers"]) == 2
    assert info["Env"] == ["KEEP=base", "PATH=/usr/bin:/bin", "NEW=1"]
    skopeo("copy", f"docker-archive:{gunzip(derived)}", f"oci:{tmp_path / 'oci'}:2")
    rootfs = unpack_with_umoci(tmp_path, f"{tmp_path / 'oci'}:2")
    assert (rootfs / "from-base").read_text() == "base\n"
    assert (rootfs / "from-top").read_text() == "top\n"


def test_from_oci_archive_and_multi_image_selection(tmp_path: Path) -> None:
    for n in ("a", "b"):
        (tmp_path / n).mkdir()
        (tmp_path / n / n).write_text(n)
        build(
            tmp_path,
            f'name = "img{n}"\ntag = "t"\ncopyToRoot = "{n}"\n',
            "--compress",
            "none",
            out_name=f"{n}.tar",
        )
    multi_image_archive(
        tmp_path / "multi.tar", [(tmp_path / "a.tar", "imga:t"), (tmp_path / "b.tar", "imgb:t")]
    )
    (tmp_path / "c").mkdir()
    build(
        tmp_path,
        'name = "c"\ntag = "t"\nfromImage = "multi.tar"\nfromImageName = '
        '"imgb"\nfromImageTag = "t"\ncopyToRoot = "c"\n',
        "--compress",
        "none",
        out_name="pick.tar",
    )
    build(
        tmp_path,
        'name = "c"\ntag = "t"\nfromImage = "multi.tar"\nfromImageName = '
        '"imgb"\ncopyToRoot = "c"\n',
        "--compress",
        "none",
        out_name="first.tar",
    )
    layers = {
        n: json.loads(skopeo("inspect", f"docker-archive:{tmp_path / f'{n}.tar'}").stdout)["Layers"]
        for n in ("a", "b", "pick", "first")
    }
    assert layers["pick"][0] == layers["b"][0]
    assert layers["first"][0] == layers["a"][0]  # name without tag: the first image
    skopeo("copy", f"docker-archive:{tmp_path / 'b.tar'}", f"oci-archive:{tmp_path / 'b.oci'}:t")
    from_oci = build(
        tmp_path,
        'name = "c"\ntag = "t"\nfromImage = "b.oci"\ncopyToRoot = "c"\n',
        "--compress",
        "none",
        out_name="from-oci.tar",
    )
    got = json.loads(skopeo("inspect", f"docker-archive:{from_oci}").stdout)["Layers"]
    assert got[0] == layers["b"][0]


@pytest.mark.vm  # the example's runAsRoot step boots the build VM
def test_example_runs_under_buildah(tmp_path: Path, containers: Containers) -> None:
    from tests.support.cli import REPO

    out = tmp_path / "hello.tar.gz"
    proc = vmbuild_cli("build", REPO / "examples" / "hello" / "image.toml", "--out", out)
    assert proc.returncode == 0, proc.stderr
    said = containers.run_image(
        gunzip(out),
        "/bin/sh",
        "-c",
        'read -r g < /etc/greeting; echo "$GREETING $g"; read -r c < my-file;'
        ' echo "$c"; /usr/bin/env | while read -r l; do :; done; echo env-ok;'
        ' while IFS=: read -r u _ uid _; do [ "$u" = app ] && echo "app $uid"; done'
        " < /etc/passwd; true",
    )
    lines = said.splitlines()
    assert lines[:3] == ["hello the example image", "some content", "env-ok"]
    assert len(lines) == 4 and lines[3].startswith("app ")
    uid = int(lines[3].split()[1])
    with tarfile.open(gunzip(out)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][-1])
        assert layer is not None
        with tarfile.open(fileobj=layer) as members:
            assert members.getmember("data").uid == uid  # chown in runAsRoot
