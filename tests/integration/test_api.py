"""The Python API: snake_case dockerTools functions with the CLI's semantics."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import vmbuild


def test_build_image_returns_the_passthru(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("hi\n")
    result = vmbuild.build_image(
        name="api",
        copy_to_root=["root", "fakeNss"],
        config={"Cmd": ["/hello"]},
        extra_commands="mkdir data",
        base_dir=tmp_path,
        out=tmp_path / "api.tar",
        compress="none",
    )
    assert len(result.image_tag) == 32
    assert result.build_args["copyToRoot"] == ["root", "fakeNss"]
    with tarfile.open(tmp_path / "api.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"api:{result.image_tag}"]
    assert vmbuild.SHADOW_SETUP.startswith("mkdir -p /etc/pam.d")


def test_api_errors_are_vmbuild_errors(tmp_path: Path) -> None:
    with pytest.raises(vmbuild.VmbuildError, match="unknown argument 'copyToRot'"):
        vmbuild.build_image(name="x", copy_to_rot=["a"], out=tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_stream_layered_image(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f").write_text("f")
    sink = io.BytesIO()
    vmbuild.stream_layered_image(name="s", tag="1", contents=["root"], base_dir=tmp_path, sink=sink)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue())) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["s:1"]


def _members(archive: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every layer's members of a docker-archive, later layers winning."""
    found: dict[str, tarfile.TarInfo] = {}
    manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
    for name in manifest[0]["Layers"]:
        with tarfile.open(fileobj=archive.extractfile(name)) as layer:
            for member in layer:
                found[member.name.lstrip("./")] = member
                if member.name.endswith("etc/passwd"):
                    data = layer.extractfile(member)
                    assert data is not None
                    found["passwd:" + data.read().decode()] = member
    return found


def test_nix_shell_image_build_and_stream_agree(tmp_path: Path) -> None:
    args: dict[str, Any] = dict(
        drv={"pname": "tool", "version": "2", "outputs": ["out", "doc"]},
        uid=1234,
        gid=99,
        home_directory="/home/dev",
        base_dir=tmp_path,
    )
    result = vmbuild.build_nix_shell_image(out=tmp_path / "a.tar", compress="none", **args)
    sink = io.BytesIO()
    vmbuild.stream_nix_shell_image(sink=sink, **args)
    assert (tmp_path / "a.tar").read_bytes() == sink.getvalue()
    assert result.build_args["homeDirectory"] == "/home/dev"
    with tarfile.open(tmp_path / "a.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [f"tool-2-env:{result.image_tag}"]
        members = _members(tar)
    passwd = next(k for k in members if k.startswith("passwd:"))
    assert "nixbld:x:1234:99:Build user:/home/dev:/noshell\n" in passwd
    for path in ("build", "home/dev", "nix/store"):
        assert (members[path].uid, members[path].gid) == (1234, 99), path
    outs = [m for m in members if m.startswith("nix/store/") and m.count("/") == 2]
    assert sorted(o.split("-", 1)[1] for o in outs) == ["tool-2", "tool-2-doc"]
    assert members["nix-shell/bin/buildDerivation"].mode == 0o755
    assert members["nix-shell/setup"].uid == 0
