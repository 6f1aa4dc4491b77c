"""mergeImages: docker-archives (gzip, zstd, plain) merged into one that podman loads as
all of them, with their image IDs, owners and shared layers kept (bad inputs: _bad.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

import vmbuild
from tests.support import crafted
from tests.support.cli import build_ok, write_spec
from tests.support.containers import Containers, skopeo

STAT = "/usr/bin/stat"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def _compression(path: Path) -> str:
    head = path.read_bytes()[:4]
    return "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else "none"


def _members(path: Path, into: Path) -> dict[str, bytes]:
    """Every regular member of a (possibly compressed) archive, by name."""
    plain = into / f"{path.name}.plain.tar"
    plain.write_bytes(_plain(path))
    with tarfile.open(plain) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def _manifest(members: dict[str, bytes]) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = json.loads(members["manifest.json"])
    return doc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A layered base (bash, stat), and on it alpha (buildImage, gzip, owned by uid 1000)
    and beta (buildLayeredImage, zstd): both share the base's layers."""
    d = tmp_path_factory.mktemp("merge-inputs")
    for name in ("a", "b"):
        (d / f"root-{name}" / "app").mkdir(parents=True)
        (d / f"root-{name}" / "app" / name).write_text(f"{name}\n")
    base = d / "base.tar"
    build_ok(
        write_spec(
            d,
            'function = "buildLayeredImage"\nname = "base"\ntag = "1"\n'
            f'contents = ["binSh", {{ path = "{STAT}", closure = true }}]\n',
            "base.toml",
        ),
        base,
        "--compress",
        "none",
    )
    alpha = d / "alpha.tar.gz"
    build_ok(
        write_spec(
            d,
            'name = "alpha"\ntag = "1"\nfromImage = "base.tar"\ncopyToRoot = ["./root-a"]\n'
            "uid = 1000\ngid = 1000\n",
            "alpha.toml",
        ),
        alpha,
        "--compress",
        "gzip",
    )
    beta = d / "beta.tar.zst"
    build_ok(
        write_spec(
            d,
            'function = "buildLayeredImage"\nname = "beta"\ntag = "2"\nfromImage = "base.tar"\n'
            'contents = ["./root-b"]\n',
            "beta.toml",
        ),
        beta,
        "--compress",
        "zstd",
    )
    return {"dir": d, "base": base, "alpha": alpha, "beta": beta}


def _merge(directory: Path, images: list[Path], out: Path, *args: str, extra: str = "") -> None:
    listed = ", ".join(f'"{p}"' for p in images)
    spec = write_spec(
        directory, f'function = "mergeImages"\nimages = [{listed}]\n{extra}', "m.toml"
    )
    build_ok(spec, out, *args)


def _image_ids(path: Path, into: Path) -> dict[str, str]:
    """name:tag -> image ID (the config's sha256) of each image in a docker-archive."""
    members = _members(path, into)
    return {
        tag: _sha(members[entry["Config"]])
        for entry in _manifest(members)
        for tag in entry["RepoTags"]
    }


@pytest.mark.tools
def test_merged_archive_loads_as_both_images(
    built: dict[str, Path], tmp_path: Path, containers: Containers
) -> None:
    out = tmp_path / "merged.tar.zst"
    _merge(tmp_path, [built["alpha"], built["beta"]], out)
    assert _compression(out) == "zstd"  # the last input's
    members = _members(out, tmp_path)
    manifest = _manifest(members)
    assert [e["RepoTags"] for e in manifest] == [["alpha:1"], ["beta:2"]]

    # configs kept byte for byte: the image IDs are the inputs'
    ids = {**_image_ids(built["alpha"], tmp_path), **_image_ids(built["beta"], tmp_path)}
    assert _image_ids(out, tmp_path) == ids

    # the base's layers are in both images and stored once
    shared = set(manifest[0]["Layers"]) & set(manifest[1]["Layers"])
    assert len(shared) >= 2
    layer_members = [n for n in members if n.endswith("/layer.tar")]
    assert len(layer_members) == len(set(manifest[0]["Layers"]) | set(manifest[1]["Layers"]))
    repositories = json.loads(members["repositories"])
    assert set(repositories) == {"alpha", "beta"}
    assert repositories["alpha"]["1"] + "/layer.tar" == manifest[0]["Layers"][-1]

    plain = tmp_path / "merged.tar"
    plain.write_bytes(_plain(out))
    loaded = containers.podman("load", "-i", str(plain)).stdout.decode()
    assert "alpha:1" in loaded and "beta:2" in loaded
    listing = containers.podman(
        "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"
    )
    seen = dict(line.split() for line in listing.stdout.decode().splitlines())
    assert seen["localhost/alpha:1"].removeprefix("sha256:") == ids["alpha:1"]
    assert seen["localhost/beta:2"].removeprefix("sha256:") == ids["beta:2"]

    # owners kept: alpha's files are uid 1000's, beta's root's
    for ref, path, owner in (("alpha:1", "/app/a", "1000:1000"), ("beta:2", "/app/b", "0:0")):
        ctr = containers.buildah("from", "-q", f"localhost/{ref}").stdout.decode().strip()
        try:
            said = containers.buildah(
                "run", "--isolation", "chroot", ctr, "--", STAT, "-c", "%u:%g", path
            )
            assert said.stdout.decode().strip() == owner
        finally:
            containers.buildah("rm", ctr)

    # skopeo reads each image of the merged archive by its tag, with the input's layers
    for ref, source in (("alpha:1", built["alpha"]), ("beta:2", built["beta"])):
        single = tmp_path / f"{ref.split(':')[0]}.tar"
        single.write_bytes(_plain(source))
        want = json.loads(skopeo("inspect", f"docker-archive:{single}").stdout)
        got = json.loads(skopeo("inspect", f"docker-archive:{plain}:{ref}").stdout)
        assert got["Layers"] == want["Layers"]
        assert got["Digest"] == want["Digest"]


@pytest.mark.tools
def test_an_input_with_several_images_contributes_all(
    built: dict[str, Path], tmp_path: Path, containers: Containers
) -> None:
    both = tmp_path / "both.tar"
    _merge(tmp_path, [built["alpha"], built["beta"]], both, "--compress", "none")
    out = tmp_path / "three.tar"
    _merge(tmp_path, [built["base"], both], out)
    assert _compression(out) == "none"
    members = _members(out, tmp_path)
    assert [e["RepoTags"] for e in _manifest(members)] == [["base:1"], ["alpha:1"], ["beta:2"]]
    loaded = containers.podman("load", "-i", str(out)).stdout.decode()
    assert all(ref in loaded for ref in ("base:1", "alpha:1", "beta:2"))


@pytest.mark.tools
@pytest.mark.parametrize(
    ("order", "args", "extra", "wanted"),
    [
        (("beta", "alpha"), [], "", "gzip"),
        (("alpha", "beta"), [], "", "zstd"),
        (("alpha", "base"), [], "", "none"),
        (("alpha", "beta"), [], 'compressor = "gz"\n', "gzip"),
        (("alpha", "beta"), ["--compress", "none"], 'compressor = "gz"\n', "none"),
    ],
)
def test_compression_follows_the_last_input_unless_told(
    built: dict[str, Path],
    tmp_path: Path,
    order: tuple[str, str],
    args: list[str],
    extra: str,
    wanted: str,
) -> None:
    out = tmp_path / "merged"
    _merge(tmp_path, [built[k] for k in order], out, *args, extra=extra)
    assert _compression(out) == wanted
    assert len(_manifest(_members(out, tmp_path))) == 2


def test_python_api(tmp_path: Path) -> None:
    a = crafted.docker_archive(tmp_path / "a.tar", [crafted.tar_bytes([("x", "f", "x")])])
    b = tmp_path / "b.tar.gz"
    other = crafted.tar_bytes([("y", "f", "y")])
    config = crafted.config_for([crafted.sha(other)])
    cfg_bytes = json.dumps(config).encode()
    manifest = [
        {
            "Config": f"{_sha(cfg_bytes)}.json",
            "RepoTags": ["other:2"],
            "Layers": [f"{1:064x}/layer.tar"],
        }
    ]
    plain_b = crafted.docker_archive(tmp_path / "b.tar", [other], config=config, manifest=manifest)
    b.write_bytes(gzip.compress(plain_b.read_bytes()))
    result = vmbuild.merge_images(images=["a.tar", b], out=tmp_path / "m.tar.gz", base_dir=tmp_path)
    assert result.out == tmp_path / "m.tar.gz"
    assert _compression(tmp_path / "m.tar.gz") == "gzip"
    members = _members(tmp_path / "m.tar.gz", tmp_path)
    assert [e["RepoTags"] for e in _manifest(members)] == [["crafted:1"], ["other:2"]]
    # a config written with spaces (not vmbuild's canonical JSON) is kept as it was
    assert members[f"{_sha(cfg_bytes)}.json"] == cfg_bytes
    vmbuild.merge_images(images=[a, b], out=tmp_path / "n.tar", compress="none")
    assert _compression(tmp_path / "n.tar") == "none"


def test_a_compressed_layer_is_kept_and_stored_once(tmp_path: Path) -> None:
    plain = crafted.tar_bytes([("z", "f", "zipped")])
    layer = gzip.compress(plain, mtime=0)
    for name, tag in (("g1.tar", "g:1"), ("g2.tar", "g:2")):
        config = crafted.config_for([crafted.sha(plain)], comment=tag)
        cfg = json.dumps(config).encode()
        entry = {
            "Config": f"{_sha(cfg)}.json",
            "RepoTags": [tag],
            "Layers": [f"{1:064x}/layer.tar"],
        }
        crafted.docker_archive(tmp_path / name, [layer], config=config, manifest=[entry])
    _merge(tmp_path, [tmp_path / "g1.tar", tmp_path / "g2.tar"], tmp_path / "m.tar")
    members = _members(tmp_path / "m.tar", tmp_path)
    layers = [n for n in members if n.endswith("/layer.tar")]
    assert layers == [f"{_sha(layer)}/layer.tar"]
    assert members[layers[0]] == layer
    assert [e["Layers"] for e in _manifest(members)] == [layers, layers]
