"""The Python API: snake_case dockerTools functions with the CLI's semantics."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

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
