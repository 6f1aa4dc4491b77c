"""Crafted base images, written member by member with tarfile and json: any digest,
diff_id, manifest or config the test chooses, right or wrong; and good two-layer bases
in every format and compression, written by vmbuild or converted by skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from tests.support.cli import vmbuild_cli
from tests.support.containers import skopeo

Members = list[tuple[str, str, bytes | str]]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(members: Members, *, end: bool = True) -> bytes:
    """A tar from (name, kind, payload): f=file, d=dir, l=symlink, h=hard link. Names
    are written as given (tarfile's own writer refuses none of them). Without ``end``,
    the tar stops after its last member (no end-of-archive blocks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1
            data = payload if isinstance(payload, bytes) else payload.encode()
            if kind == "f":
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
                continue
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, data.decode()
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, data.decode()
            tar.addfile(ti)
        if not end:
            size = buf.tell()
    data = buf.getvalue()
    return data if end else data[:size]


def config_for(diff_ids: list[str], **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config.update(extra)
    return config


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), 1, 0o644
    tar.addfile(ti, io.BytesIO(data))


def docker_archive(
    path: Path,
    layers: list[bytes],
    *,
    diff_ids: list[Any] | None = None,
    config: Any = None,
    manifest: Any = None,
) -> Path:
    """A docker-archive of ``layers`` (plain tar): ``N/layer.tar``, the config, manifest.json.

    ``diff_ids`` default to the layers' hashes; ``config`` and ``manifest`` replace the
    documents written (any JSON value, or bytes as they are)."""
    ids = diff_ids if diff_ids is not None else [sha(layer) for layer in layers]
    cfg = config if config is not None else config_for(ids)
    cfg_bytes = cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode()
    cfg_name = f"{hashlib.sha256(cfg_bytes).hexdigest()}.json"
    names = [f"{i + 1:064x}/layer.tar" for i in range(len(layers))]
    doc = (
        manifest
        if manifest is not None
        else [{"Config": cfg_name, "RepoTags": ["crafted:1"], "Layers": names}]
    )
    with tarfile.open(path, "w") as tar:
        for name, layer in zip(names, layers, strict=True):
            _add(tar, name, layer)
        _add(tar, cfg_name, cfg_bytes)
        _add(tar, "manifest.json", doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return path


def _blob(directory: Path, data: bytes, digest: str | None = None) -> dict[str, Any]:
    digest = digest or sha(data)
    if digest.startswith("sha256:") and "/" not in digest:
        (directory / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def oci_layout(
    directory: Path,
    layers: list[bytes],
    *,
    layer_digests: list[str] | None = None,
    diff_ids: list[Any] | None = None,
    config: Any = None,
    manifest: Any = None,
    index: Any = None,
) -> Path:
    """An OCI layout of ``layers`` (stored as given, plain or compressed); the other
    arguments replace what is written, as for :func:`docker_archive`. A layer digest that
    is not a plain sha256 digest is written into the manifest only."""
    (directory / "blobs" / "sha256").mkdir(parents=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descs = []
    digests: list[str | None] = list(layer_digests) if layer_digests else [None] * len(layers)
    for layer, digest in zip(layers, digests, strict=True):
        d = _blob(directory, layer, digest)
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
        descs.append(d)
    if diff_ids is None:
        diff_ids = [sha(_plain(layer)) for layer in layers]
    cfg = config if config is not None else config_for(diff_ids)
    cfg_desc = _blob(directory, cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode())
    cfg_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    doc = (
        manifest
        if manifest is not None
        else {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg_desc,
            "layers": descs,
        }
    )
    man_desc = _blob(directory, doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    man_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    man_desc["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    top = index if index is not None else {"schemaVersion": 2, "manifests": [man_desc]}
    (directory / "index.json").write_bytes(
        top if isinstance(top, bytes) else json.dumps(top).encode()
    )
    return directory


def _plain(layer: bytes) -> bytes:
    if layer[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(layer)
    if layer[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(layer)
    return layer


def oci_archive(path: Path, layout: Path) -> Path:
    """The OCI layout ``layout`` as one tar."""
    with tarfile.open(path, "w") as tar:
        for p in sorted(layout.rglob("*")):
            if p.is_file() and not p.is_symlink():
                _add(tar, p.relative_to(layout).as_posix(), p.read_bytes())
    return path


def build_base(directory: Path, fmt: str, compression: str) -> Path:
    """A two-layer base image, written by vmbuild (or converted by skopeo)."""
    trees = []
    for i, name in enumerate(("one", "two")):
        tree = directory / f"tree-{name}"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc" / name).write_text(f"{name}\n")
        if i == 0:
            (tree / "bin").mkdir()
            os.symlink("../etc/one", tree / "bin" / "one")
        trees.append(tree)
    vm_fmt = "docker-archive" if fmt.startswith("skopeo") else fmt
    vm_comp = "none" if fmt.startswith("skopeo") else compression
    lower = directory / "lower"
    spec = directory / "lower.toml"
    spec.write_text(f'name = "lower"\ntag = "t"\ncopyToRoot = "{trees[0]}"\n')
    args = ["--format", vm_fmt, "--compress", vm_comp]
    assert vmbuild_cli("build", spec, "--out", lower, *args).returncode == 0
    base = directory / "base"
    spec = directory / "base.toml"
    spec.write_text(f'name = "base"\ntag = "t"\nfromImage = "{lower}"\ncopyToRoot = "{trees[1]}"\n')
    proc = vmbuild_cli("build", spec, "--out", base, *args)
    assert proc.returncode == 0, proc.stderr
    if fmt == "skopeo-oci":
        dest = directory / "skopeo-layout"
        skopeo(
            "copy", "--dest-compress-format", compression, f"docker-archive:{base}", f"oci:{dest}:t"
        )
        return dest
    if fmt == "skopeo-oci-archive":
        dest = directory / "skopeo.tar"
        skopeo(
            "copy",
            "--dest-compress-format",
            compression,
            f"docker-archive:{base}",
            f"oci-archive:{dest}:t",
        )
        return dest
    return base


def layer_kinds(base: Path) -> set[str]:
    """The compression of each layer of an OCI base, by its first bytes."""
    if base.is_dir():
        blobs = [p.read_bytes()[:4] for p in (base / "blobs" / "sha256").iterdir()]
    else:
        with tarfile.open(base) as tar:
            blobs = [
                tar.extractfile(m).read(4)  # type: ignore[union-attr]
                for m in tar
                if m.isreg() and m.name.startswith("blobs/")
            ]
    kinds = set()
    for head in blobs:
        if head[:2] == b"\x1f\x8b":
            kinds.add("gzip")
        elif head == b"\x28\xb5\x2f\xfd":
            kinds.add("zstd")
    return kinds
