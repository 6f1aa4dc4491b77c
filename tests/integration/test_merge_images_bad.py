"""mergeImages' bad inputs: each is one line, a non-zero exit, and nothing written."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

import vmbuild
from tests.support import crafted
from tests.support.cli import build_ok, vmbuild_cli, write_spec


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refused(directory: Path, text: str, *args: str) -> str:
    spec = write_spec(directory, text)
    outdir = directory / "out"
    outdir.mkdir(exist_ok=True)
    proc = vmbuild_cli("build", spec, "--out", outdir / "merged", *args)
    assert proc.returncode in (1, 2), proc.stderr  # an image's fault, or the spec's
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error:"), proc.stderr
    assert list(outdir.iterdir()) == []
    return lines[0]


def _one(directory: Path, name: str = "one.tar", tag: str = "one:1", data: str = "1") -> Path:
    layer = crafted.tar_bytes([(f"f{data}", "f", data)])
    config = crafted.config_for([crafted.sha(layer)], comment=data)
    cfg = json.dumps(config).encode()
    manifest = [
        {"Config": f"{_sha(cfg)}.json", "RepoTags": [tag], "Layers": [f"{1:064x}/layer.tar"]}
    ]
    return crafted.docker_archive(directory / name, [layer], config=config, manifest=manifest)


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        (
            'function = "mergeImages"\n',
            "images must be a non-empty list of image archives, got missing",
        ),
        ('function = "mergeImages"\nimages = []\n', "got empty"),
        ('function = "mergeImages"\nimages = "one.tar"\n', "got str 'one.tar'"),
        (
            'function = "mergeImages"\nimages = [1]\n',
            "images[0] must be the path of an image archive",
        ),
        ('function = "mergeImages"\nimages = ["one.tar", ""]\n', "images[1] must be the path"),
        ('function = "mergeImages"\nimages = ["one.tar", "gone.tar"]\n', "images[1]"),
        (
            'function = "mergeImages"\nimages = ["one.tar"]\ncompressor = "xz"\n',
            "compressor = 'xz'",
        ),
        ('function = "mergeImages"\nimages = ["one.tar"]\nname = "x"\n', "unknown argument 'name'"),
    ],
)
def test_bad_images_argument(tmp_path: Path, text: str, wanted: str) -> None:
    _one(tmp_path)
    line = _refused(tmp_path, text)
    assert wanted in line, line
    if "gone.tar" in text:
        assert "gone.tar does not exist" in line


@pytest.mark.tools
@pytest.mark.parametrize("fmt", ["oci", "oci-archive"])
def test_oci_inputs_are_not_docker_archives(tmp_path: Path, fmt: str) -> None:
    write_spec(tmp_path, 'name = "o"\ntag = "1"\n', "o.toml")
    build_ok(tmp_path / "o.toml", tmp_path / "o", "--format", fmt)
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["o"]\n')
    what = "an OCI layout directory" if fmt == "oci" else "an OCI archive"
    assert f"{tmp_path / 'o'} is {what}, not a docker-archive" in line, line


def test_not_an_image_archive(tmp_path: Path) -> None:
    _one(tmp_path)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar", "junk.tar"]\n')
    assert "junk.tar is not a readable image archive" in line, line
    with tarfile.open(tmp_path / "files.tar", "w") as tar:
        tar.add(tmp_path / "one.tar", "some-file")
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["files.tar"]\n')
    assert "files.tar is not an image archive (no manifest.json)" in line, line


def test_a_tag_in_two_inputs(tmp_path: Path) -> None:
    _one(tmp_path, "a.tar", "same:1", "a")
    b = _one(tmp_path, "b.tar", "same:1", "b")
    (tmp_path / "b.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(b.read_bytes()))
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["a.tar", "b.tar.zst"]\n')
    assert "the tag same:1 is in both images[0]" in line, line
    assert "a.tar) and images[1]" in line and "b.tar.zst)" in line, line


def test_a_tag_twice_in_one_input(tmp_path: Path) -> None:
    _one(tmp_path)
    layer = crafted.tar_bytes([("x", "f", "x")])
    config = crafted.config_for([crafted.sha(layer)])
    cfg = f"{_sha(json.dumps(config).encode())}.json"
    entry = {"Config": cfg, "RepoTags": ["twice:1"], "Layers": [f"{1:064x}/layer.tar"]}
    crafted.docker_archive(tmp_path / "two.tar", [layer], config=config, manifest=[entry, entry])
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar", "two.tar"]\n')
    assert "the tag twice:1 is twice in images[1]" in line and "its images 1 and 2" in line, line


def test_a_corrupt_layer_writes_nothing(tmp_path: Path) -> None:
    _one(tmp_path)
    layer = crafted.tar_bytes([("x", "f", "x")])
    crafted.docker_archive(tmp_path / "bad.tar", [layer], diff_ids=["sha256:" + "0" * 64])
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar", "bad.tar"]\n')
    assert "bad.tar: layer 1: its tar hashes to" in line, line


def test_an_unsafe_layer_writes_nothing(tmp_path: Path) -> None:
    _one(tmp_path)
    layer = crafted.tar_bytes([("../escape", "f", "x")])
    crafted.docker_archive(tmp_path / "bad.tar", [layer])
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar", "bad.tar"]\n')
    assert "bad.tar: layer 1" in line and "escape" in line, line


def test_a_bad_config_writes_nothing(tmp_path: Path) -> None:
    _one(tmp_path)
    layer = crafted.tar_bytes([("x", "f", "x")])
    crafted.docker_archive(tmp_path / "bad.tar", [layer], config={"rootfs": "nope"})
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar", "bad.tar"]\n')
    assert "rootfs is not a JSON object" in line, line


@pytest.mark.parametrize("fmt", ["oci", "oci-archive"])
def test_only_docker_archive_output(tmp_path: Path, fmt: str) -> None:
    _one(tmp_path)
    line = _refused(tmp_path, 'function = "mergeImages"\nimages = ["one.tar"]\n', "--format", fmt)
    assert f"mergeImages writes a docker-archive, not {fmt}" in line, line


def test_api_bad_input_is_a_vmbuild_error(tmp_path: Path) -> None:
    with pytest.raises(vmbuild.VmbuildError, match="got empty"):
        vmbuild.merge_images(images=[], out=tmp_path / "m.tar")
    assert not (tmp_path / "m.tar").exists()
