"""Crafted and damaged base images through every builder (no VM): digests that would be
paths, symlinked or altered layout blobs, layers that do not match their diff_id, are
not tars or hold unsafe names, JSON of the wrong shape; and good bases in every format
vmbuild reads, plain, gzip and zstd."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.support.containers import skopeo
from tests.support.crafted import (
    Members,
    build_base,
    config_for,
    docker_archive,
    layer_kinds,
    oci_archive,
    oci_layout,
    sha,
    tar_bytes,
)

pytestmark = pytest.mark.tools

GOOD_LAYER: Members = [("etc", "d", ""), ("etc/base", "f", "base\n")]
BUILDERS = ["buildImage", "buildLayeredImage", "streamLayeredImage", "exportImage"]


def spec_text(builder: str, base: Path, tree: Path) -> str:
    if builder == "buildImage":
        return f'name = "top"\ntag = "t"\nfromImage = "{base}"\ncopyToRoot = "{tree}"\n'
    if builder in ("buildLayeredImage", "streamLayeredImage"):
        return (
            f'function = "{builder}"\nname = "lay"\ntag = "t"\n'
            f'fromImage = "{base}"\ncontents = ["{tree}"]\n'
        )
    return f'function = "exportImage"\nfromImage = "{base}"\n'


def top_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "top-tree"
    if not tree.exists():
        (tree / "srv").mkdir(parents=True)
        (tree / "srv" / "top").write_text("top\n")
    return tree


def run(
    tmp_path: Path, builder: str, base: Path, *extra: str, out_name: str = "out"
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    """Build ``builder`` on ``base`` into a directory of its own; (process, output)."""
    outdir = tmp_path / f"out-{builder}-{'-'.join(extra) or 'default'}-{out_name}"
    outdir.mkdir()
    spec = outdir.parent / f"{outdir.name}.toml"
    spec.write_text(spec_text(builder, base, top_tree(tmp_path)))
    out = outdir / out_name
    if builder == "streamLayeredImage":
        with open(out, "wb") as sink:
            proc = subprocess.run(
                [sys.executable, "-m", "vmbuild", "stream", str(spec)],
                stdout=sink,
                stderr=subprocess.PIPE,
                timeout=300,
                check=False,
            )
        return subprocess.CompletedProcess(proc.args, proc.returncode, b"", proc.stderr), out
    cmd = [sys.executable, "-m", "vmbuild", "build", str(spec), "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    return proc, out


def assert_refused(
    proc: subprocess.CompletedProcess[bytes], out: Path, message: str, builder: str = ""
) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error: "), err
    assert message in lines[0], err
    if builder != "streamLayeredImage":  # a stream's reader sees what came before
        assert sorted(os.listdir(out.parent)) == [], os.listdir(out.parent)


def all_builds(tmp_path: Path, base: Path) -> list[tuple[str, tuple[str, ...]]]:
    return [
        ("buildImage", ("--format", "docker-archive")),
        ("buildImage", ("--format", "oci-archive")),
        ("buildImage", ("--format", "oci")),
        ("buildLayeredImage", ()),
        ("streamLayeredImage", ()),
        ("exportImage", ()),
    ]


def refused_everywhere(tmp_path: Path, base: Path, message: str) -> None:
    for builder, extra in all_builds(tmp_path, base):
        proc, out = run(tmp_path, builder, base, *extra)
        assert_refused(proc, out, message, builder)


# -- item 1: a digest never becomes a path


def good_manifest(tmp_path: Path, layer: bytes) -> dict[str, Any]:
    """The manifest of a good layout of ``layer`` (written aside), to alter."""
    good = oci_layout(tmp_path / "good", [layer])
    index = json.loads((good / "index.json").read_text())
    manifest: dict[str, Any] = json.loads(
        (good / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    return manifest


def traversal(tmp_path: Path) -> tuple[str, Path]:
    target = tmp_path / "escaped"
    return "sha256:" + "../" * 40 + str(target).lstrip("/"), target


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci"])
@pytest.mark.parametrize("where", ["diff_id", "layout layer", "archive layer", "config"])
def test_a_traversal_digest_is_refused(tmp_path: Path, fmt: str, where: str) -> None:
    evil, target = traversal(tmp_path)
    layer = tar_bytes(GOOD_LAYER)
    if where == "diff_id":
        base = docker_archive(tmp_path / "base.tar", [layer], diff_ids=[evil])
    elif where == "config":
        man = good_manifest(tmp_path, layer)
        manifest = {**man, "config": {**man["config"], "digest": evil}}
        base = oci_layout(tmp_path / "layout", [layer], manifest=manifest)
    else:
        base = oci_layout(tmp_path / "layout", [layer], layer_digests=[evil])
        if where == "archive layer":
            base = oci_archive(tmp_path / "base-oci.tar", base)
    proc, out = run(tmp_path, "buildImage", base, "--format", fmt)
    assert_refused(proc, out, "is not a valid digest")
    assert not target.exists()


def test_an_index_digest_of_another_algorithm(tmp_path: Path) -> None:
    index = {"schemaVersion": 2, "manifests": [{"digest": "sha512:" + "ab" * 64, "size": 3}]}
    base = oci_layout(tmp_path / "layout", [tar_bytes(GOOD_LAYER)], index=index)
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, "is not a sha256 digest")


# -- item 2: an OCI layout base never reads outside itself


def layout_with_layer(tmp_path: Path, layer: bytes) -> tuple[Path, Path]:
    base = oci_layout(tmp_path / "layout", [layer])
    return base, base / "blobs" / "sha256" / sha(layer)[7:]


def test_a_symlinked_layer_blob_is_refused(tmp_path: Path) -> None:
    layer = tar_bytes(GOOD_LAYER)
    base, blob = layout_with_layer(tmp_path, layer)
    host_file = tmp_path / "host-file"  # the very bytes the manifest names: only the link is wrong
    host_file.write_bytes(layer)
    blob.unlink()
    os.symlink(host_file, blob)
    refused_everywhere(tmp_path, base, "is a symbolic link or not a regular file")


def test_a_symlinked_blobs_dir_or_index_is_refused(tmp_path: Path) -> None:
    layer = tar_bytes(GOOD_LAYER)
    base, _ = layout_with_layer(tmp_path, layer)
    elsewhere = tmp_path / "elsewhere"
    os.rename(base / "blobs", elsewhere)
    os.symlink(elsewhere, base / "blobs")
    proc, out = run(tmp_path, "buildImage", base)
    assert_refused(proc, out, "is a symbolic link or not a regular file")
    os.unlink(base / "blobs")
    os.rename(elsewhere, base / "blobs")
    os.rename(base / "index.json", tmp_path / "index.json")
    os.symlink(tmp_path / "index.json", base / "index.json")
    proc, out = run(tmp_path, "exportImage", base, out_name="again")
    assert_refused(proc, out, "index.json is a symbolic link or not a regular file")


def test_a_fifo_blob_is_refused_without_hanging(tmp_path: Path) -> None:
    base, blob = layout_with_layer(tmp_path, tar_bytes(GOOD_LAYER))
    blob.unlink()
    os.mkfifo(blob)
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, "is a symbolic link or not a regular file")


def test_a_layer_blob_with_other_bytes_is_refused(tmp_path: Path) -> None:
    layer = tar_bytes(GOOD_LAYER)
    base, blob = layout_with_layer(tmp_path, layer)
    other = tar_bytes([("etc", "d", ""), ("etc/base", "f", "evil\n")])
    assert len(other) == len(layer)
    blob.write_bytes(other)
    refused_everywhere(tmp_path, base, "not its digest")


def test_gzip_layer_blob_with_other_bytes_is_refused(tmp_path: Path) -> None:
    plain = tar_bytes(GOOD_LAYER)
    layer = gzip.compress(plain, mtime=0)
    base = oci_layout(tmp_path / "layout", [layer])
    (base / "blobs" / "sha256" / sha(layer)[7:]).write_bytes(gzip.compress(plain, 9, mtime=7))
    refused_everywhere(tmp_path, base, "not its digest")


def test_a_config_or_manifest_with_other_bytes_is_refused(tmp_path: Path) -> None:
    base = oci_layout(tmp_path / "layout", [tar_bytes(GOOD_LAYER)])
    index = json.loads((base / "index.json").read_text())
    man = base / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]
    cfg = base / "blobs" / "sha256" / json.loads(man.read_text())["config"]["digest"][7:]
    cfg.write_bytes(cfg.read_bytes().replace(b"PATH=/bin", b"PATH=/xyz"))
    proc, out = run(tmp_path, "buildImage", base)
    assert_refused(proc, out, "does not match its digest")
    man.write_bytes(man.read_bytes() + b" ")
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, "does not match its digest")


# -- item 5: base layers are checked, by every builder


def test_a_layer_that_does_not_match_its_diff_id(tmp_path: Path) -> None:
    layer = tar_bytes(GOOD_LAYER)
    other = tar_bytes([("etc", "d", ""), ("etc/base", "f", "evil\n")])
    base = docker_archive(tmp_path / "base.tar", [other], diff_ids=[sha(layer)])
    refused_everywhere(tmp_path, base, "not its diff_id")


def test_a_garbage_layer(tmp_path: Path) -> None:
    garbage = os.urandom(10240)
    base = docker_archive(tmp_path / "base.tar", [garbage])  # its diff_id matches
    refused_everywhere(tmp_path, base, "not a readable tar")


def test_a_layer_with_a_corrupt_header_part_way(tmp_path: Path) -> None:
    data = bytearray(tar_bytes([("a", "f", "1" * 700), ("b", "f", "2"), ("c", "f", "3")]))
    second = data.index(b"b\0")
    data[second + 100 : second + 108] = b"garbage!"
    base = docker_archive(tmp_path / "base.tar", [bytes(data)])  # its diff_id matches
    refused_everywhere(tmp_path, base, "corrupt tar header at byte")


def test_a_truncated_layer(tmp_path: Path) -> None:
    data = tar_bytes([("a", "f", "1" * 5000), ("b", "f", "2")])
    cut = data[: data.index(b"1" * 5000) + 2000]
    base = docker_archive(tmp_path / "base.tar", [cut])  # its diff_id matches
    refused_everywhere(tmp_path, base, "the tar is truncated")


def listing(tar_path: Path) -> dict[str, str]:
    out = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            out[m.name.rstrip("/")] = f.read().decode() if f else m.linkname
    return out


def test_a_layer_without_end_blocks_stays_within_itself(tmp_path: Path) -> None:
    first = tar_bytes([("etc", "d", ""), ("etc/one", "f", "1\n")], end=False)
    second = tar_bytes([("etc", "d", ""), ("etc/two", "f", "2\n")], end=False)
    base = docker_archive(tmp_path / "base.tar", [first, second])
    proc, out = run(tmp_path, "exportImage", base)
    assert proc.returncode == 0, proc.stderr.decode()
    assert listing(out) == {"etc": "", "etc/one": "1\n", "etc/two": "2\n"}
    for builder in ("buildImage", "buildLayeredImage"):
        proc, out = run(tmp_path, builder, base, "--compress", "none")  # for skopeo
        assert proc.returncode == 0, proc.stderr.decode()
        skopeo("copy", f"docker-archive:{out}", f"oci:{out.parent / 'oci'}:t")


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../escape", "f", "x"), "climbs out"),
        (("/abs", "f", "x"), "absolute path"),
        (("up", "l", "../../etc/passwd"), "points outside"),
        (("dangling", "h", "missing"), "has no target"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "dangling-hardlink"],
)
@pytest.mark.parametrize("builder", BUILDERS)
def test_unsafe_names_are_refused_by_every_builder(
    tmp_path: Path, builder: str, member: tuple[str, str, str], message: str
) -> None:
    layer = tar_bytes([("ok", "f", "fine"), member])
    base = docker_archive(tmp_path / "base.tar", [layer])
    proc, out = run(tmp_path, builder, base)
    assert_refused(proc, out, message, builder)


def test_unsafe_names_in_a_gzip_layer(tmp_path: Path) -> None:
    layer = gzip.compress(tar_bytes([("ok", "f", "fine"), ("../escape", "f", "x")]))
    base = oci_layout(tmp_path / "layout", [layer])
    refused_everywhere(tmp_path, base, "climbs out")


# -- item 11: input JSON of the wrong shape gives one line


def _with_config(tmp_path: Path, config: object) -> Path:
    return docker_archive(tmp_path / "base.tar", [tar_bytes(GOOD_LAYER)], config=config)


def _layer_diff_id() -> str:
    return sha(tar_bytes(GOOD_LAYER))


BAD_DOCKER: dict[str, tuple[Callable[[], object], str]] = {
    "config is a list": (lambda: [1, 2], "the image config is not a JSON object"),
    "config.config is a string": (
        lambda: config_for([_layer_diff_id()], config="x"),
        "the config's config is not a JSON object",
    ),
    "Env entries not strings": (
        lambda: config_for([_layer_diff_id()], config={"Env": [1, {"a": 2}]}),
        "Env holds something other than strings",
    ),
    "history entries not objects": (
        lambda: config_for([_layer_diff_id()], history=["made", 3]),
        "history entry 1 is not a JSON object",
    ),
    "diff_id without colon": (lambda: config_for(["abc"]), "'abc' is not a valid digest"),
    "diff_ids not a list": (
        lambda: {"rootfs": {"diff_ids": "sha256:x"}},
        "rootfs.diff_ids is not a list",
    ),
    "rootfs missing": (lambda: {"config": {}}, "rootfs is not a JSON object"),
    "too few diff_ids": (lambda: config_for([]), "lists 0 diff_ids for 1 layers"),
    "config not JSON": (lambda: b"{nope", "is not valid JSON"),
    "config deeply nested": (lambda: b"[" * 200000 + b"]" * 200000, "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_DOCKER))
def test_bad_docker_configs_give_one_line(tmp_path: Path, case: str) -> None:
    config, message = BAD_DOCKER[case]
    base = _with_config(tmp_path, config())
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, message)


BAD_MANIFESTS = {
    "manifest.json an object": ({"Config": "x"}, "manifest.json is not a list"),
    "manifest.json empty": ([], "manifest.json lists no image"),
    "entry a string": (["x"], "manifest.json entry 1 is not a JSON object"),
    "Config a number": ([{"Config": 7, "Layers": []}], "has no Config member name"),
    "Layers a string": ([{"Config": "c.json", "Layers": "l"}], "Layers is not a list"),
    "RepoTags a number": (
        [{"Config": "c.json", "Layers": [], "RepoTags": 5}],
        "RepoTags is not a list",
    ),
    "Config missing": ([{"Config": "missing.json", "Layers": []}], "lacks missing.json"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_docker_manifests_give_one_line(tmp_path: Path, case: str) -> None:
    manifest, message = BAD_MANIFESTS[case]
    base = docker_archive(tmp_path / "base.tar", [tar_bytes(GOOD_LAYER)], manifest=manifest)
    proc, out = run(tmp_path, "buildImage", base)
    assert_refused(proc, out, message)


def test_config_named_by_another_digest(tmp_path: Path) -> None:
    layer = tar_bytes(GOOD_LAYER)
    base = docker_archive(tmp_path / "base.tar", [layer])
    with tarfile.open(base) as tar:
        names = tar.getnames()
    config_name = next(n for n in names if n.endswith(".json") and n != "manifest.json")
    wrong = [{"Config": config_name, "Layers": [names[0]], "RepoTags": []}]
    other = config_for([sha(layer)], history=[{"created_by": "x"}])
    base = docker_archive(tmp_path / "base2.tar", [layer], config=other, manifest=wrong)
    with tarfile.open(base, "a") as tar:  # the member named by the first config's digest
        data = json.dumps(other).encode()
        ti = tarfile.TarInfo(config_name)
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, "does not match its digest")


def _index_case(tmp_path: Path, case: str) -> Path:
    layer = tar_bytes(GOOD_LAYER)
    good = oci_layout(tmp_path / "good", [layer])
    desc = json.loads((good / "index.json").read_text())["manifests"][0]
    man = good_manifest(tmp_path / "again", layer)
    target = tmp_path / "layout"
    if case == "index.json a list":
        return oci_layout(target, [layer], index=[desc])
    if case == "manifests entries not objects":
        return oci_layout(target, [layer], index={"manifests": ["x", 3]})
    if case == "manifests not a list":
        return oci_layout(target, [layer], index={"manifests": {"a": desc}})
    if case == "no manifests":
        return oci_layout(target, [layer], index={"manifests": []})
    if case == "annotations a list":
        return oci_layout(target, [layer], index={"manifests": [{**desc, "annotations": [1]}]})
    if case == "size a string":
        return oci_layout(target, [layer], index={"manifests": [{**desc, "size": "10"}]})
    if case == "wrong size":
        return oci_layout(target, [layer], index={"manifests": [{**desc, "size": 3}]})
    if case == "manifest a list":
        return oci_layout(target, [layer], manifest=[man])
    if case == "manifest layers not a list":
        return oci_layout(target, [layer], manifest={**man, "layers": "x"})
    if case == "manifest layer not an object":
        return oci_layout(target, [layer], manifest={**man, "layers": [4]})
    if case == "manifest config a string":
        return oci_layout(target, [layer], manifest={**man, "config": "x"})
    if case == "layer size wrong":
        return oci_layout(
            target, [layer], manifest={**man, "layers": [{**man["layers"][0], "size": 1}]}
        )
    if case == "index.json not JSON":
        return oci_layout(target, [layer], index=b"\xff\xfe")
    raise AssertionError(case)


BAD_INDEXES = {
    "index.json a list": "index.json is not a JSON object",
    "manifests entries not objects": "index.json's manifest 1 is not a JSON object",
    "manifests not a list": "index.json's manifests is not a list",
    "no manifests": "index.json lists no image",
    "annotations a list": "annotations that are not an object",
    "size a string": "size that is not a count of bytes",
    "wrong size": "not the 3 its descriptor says",
    "manifest a list": "the image manifest is not a JSON object",
    "manifest layers not a list": "the manifest's layers is not a list",
    "manifest layer not an object": "the manifest's layer 1 is not a JSON object",
    "manifest config a string": "the manifest's config is not a JSON object",
    "layer size wrong": "not the 1 its descriptor says",
    "index.json not JSON": "is not valid JSON",
}


@pytest.mark.parametrize("case", list(BAD_INDEXES))
@pytest.mark.parametrize("packed", [False, True], ids=["layout", "archive"])
def test_bad_oci_documents_give_one_line(tmp_path: Path, case: str, packed: bool) -> None:
    base = _index_case(tmp_path, case)
    if packed:
        base = oci_archive(tmp_path / "base.tar", base)
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, BAD_INDEXES[case])


# -- item 4: good bases in every format, with plain, gzip and zstd layers

BASE_KINDS = [
    ("docker-archive", "none"),
    ("docker-archive", "gzip"),
    ("docker-archive", "zstd"),
    ("oci-archive", "none"),
    ("oci-archive", "gzip"),
    ("oci-archive", "zstd"),
    ("oci", "none"),
    ("oci", "gzip"),
    ("oci", "zstd"),
    ("skopeo-oci", "gzip"),
    ("skopeo-oci", "zstd"),
    ("skopeo-oci-archive", "gzip"),
]
EXPECTED = {
    "etc": "",
    "etc/one": "one\n",
    "etc/two": "two\n",
    "bin": "",
    "bin/one": "../etc/one",
}


@pytest.fixture(scope="module", params=BASE_KINDS, ids=[f"{f}-{c}" for f, c in BASE_KINDS])
def any_base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    fmt, compression = request.param
    base = build_base(tmp_path_factory.mktemp(f"base-{fmt}-{compression}"), fmt, compression)
    if "oci" in fmt and compression != "none":
        assert compression in layer_kinds(base)
    return base


def image_names(archive: Path) -> dict[str, str]:
    """Every member of every layer of a docker-archive (compressed or not)."""
    out: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for path in manifest[0]["Layers"]:
            blob = tar.extractfile(path)
            assert blob is not None
            data = blob.read()
            if data[:4] == b"\x28\xb5\x2f\xfd":  # kept byte for byte from a zstd base
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as layer:
                for m in layer:
                    f = layer.extractfile(m) if m.isreg() else None
                    out[m.name.rstrip("/")] = f.read().decode() if f else m.linkname
    return out


def test_every_base_format_through_every_builder(tmp_path: Path, any_base: Path) -> None:
    proc, out = run(tmp_path, "exportImage", any_base)
    assert proc.returncode == 0, proc.stderr.decode()
    assert listing(out) == EXPECTED
    with_top = {**EXPECTED, "srv": "", "srv/top": "top\n"}
    for builder in ("buildImage", "buildLayeredImage", "streamLayeredImage"):
        extra = () if builder == "streamLayeredImage" else ("--compress", "none")  # for skopeo
        proc, out = run(tmp_path, builder, any_base, *extra)
        assert proc.returncode == 0, proc.stderr.decode()
        assert image_names(out) == with_top, builder
        skopeo("copy", f"docker-archive:{out}", f"oci:{out.parent / 'check'}:t")  # digests verify


@pytest.mark.parametrize("fmt", ["oci", "oci-archive"])
def test_compressed_base_layers_kept_in_oci_outputs(tmp_path: Path, fmt: str) -> None:
    base = build_base(tmp_path / "b", "oci-archive", "zstd")
    proc, out = run(tmp_path, "buildImage", base, "--format", fmt, "--compress", "gzip")
    assert proc.returncode == 0, proc.stderr.decode()
    assert layer_kinds(out) == {"zstd", "gzip"}
    ref = f"oci:{out}:t" if fmt == "oci" else f"oci-archive:{out}:t"
    skopeo("copy", ref, f"oci:{tmp_path / 'check'}:t")
    again, again_out = run(tmp_path, "exportImage", out)
    assert again.returncode == 0, again.stderr.decode()
    assert listing(again_out) == {**EXPECTED, "srv": "", "srv/top": "top\n"}


def test_a_zstd_layer_of_several_frames(tmp_path: Path) -> None:
    plain = tar_bytes([("etc", "d", ""), ("etc/one", "f", "one\n"), ("etc/big", "f", "b" * 9000)])
    z = zstandard.ZstdCompressor()
    layer = z.compress(plain[:4096]) + z.compress(plain[4096:])
    base = oci_layout(tmp_path / "layout", [layer], diff_ids=[sha(plain)])
    proc, out = run(tmp_path, "exportImage", base)
    assert proc.returncode == 0, proc.stderr.decode()
    assert listing(out)["etc/big"] == "b" * 9000


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_damaged_compressed_archive_gives_one_line(tmp_path: Path, kind: str) -> None:
    plain = docker_archive(tmp_path / "base.tar", [tar_bytes(GOOD_LAYER)]).read_bytes()
    zstd = zstandard.ZstdCompressor(write_checksum=True)
    packed = gzip.compress(plain) if kind == "gzip" else zstd.compress(plain)
    damaged = bytearray(packed)
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = os.urandom(64)
    base = tmp_path / f"damaged.tar.{kind}"
    base.write_bytes(bytes(damaged))
    proc, out = run(tmp_path, "exportImage", base)
    assert_refused(proc, out, "is not a readable image archive")


def test_one_blob_listed_with_two_diff_ids(tmp_path: Path) -> None:
    plain = tar_bytes(GOOD_LAYER)
    layer = gzip.compress(plain)
    other = sha(tar_bytes([("x", "f", "y")]))
    base = oci_layout(tmp_path / "layout", [layer, layer], diff_ids=[sha(plain), other])
    proc, out = run(tmp_path, "buildImage", base, "--format", "oci")
    assert_refused(proc, out, "layers 1 and 2 are the same blob with different diff_ids")
