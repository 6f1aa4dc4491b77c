"""Read a base image: docker-archive (gzip/zstd or not), OCI archive, or OCI layout dir.

Nothing from the archive is ever extracted by its own name. An uncompressed archive is
read in place (each blob is a byte range of the file); a compressed one is streamed once
and its regular members spooled to numbered files in ``workdir``. Layers are kept byte
for byte; their diff_ids come from the image config.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from vmbuild.errors import ImageError
from vmbuild.oci.compress import decompressor, sniff
from vmbuild.oci.image import MT_DOCKER_LIST, MT_OCI_INDEX, BlobRef, Layer, host_goarch


@dataclass
class BaseImage:
    config: dict[str, Any]
    layers: list[Layer]
    repo_tags: list[str] = field(default_factory=list)


class _Members:
    """Regular members of an archive by normalised name -> BlobRef."""

    def __init__(self, path: Path, workdir: Path):
        self.path = path
        self.refs: dict[str, BlobRef] = {}
        links: dict[str, str] = {}
        with open(path, "rb") as f:
            kind = sniff(f.read(4))
        try:
            if kind == "none":
                self._index_in_place(links)
            else:
                self._spool(kind, workdir, links)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ImageError(
                f"{path} is not a readable image archive ({exc})",
                "give a docker-archive (docker save) or OCI archive; it may be truncated",
            ) from exc
        for name, target in links.items():
            if target in self.refs:
                self.refs.setdefault(name, self.refs[target])

    def _index_in_place(self, links: dict[str, str]) -> None:
        size = self.path.stat().st_size
        with tarfile.open(self.path, "r:") as tar:
            for m in tar:
                name = posixpath.normpath(m.name.lstrip("./") or ".")
                if m.isreg():
                    if m.offset_data + m.size > size:
                        raise ValueError(f"member {m.name} runs past the end of the file")
                    self.refs[name] = BlobRef(self.path, m.offset_data, m.size)
                elif m.issym() or m.islnk():
                    base = posixpath.dirname(name) if m.issym() else ""
                    links[name] = posixpath.normpath(posixpath.join(base, m.linkname))

    def _spool(self, kind: Any, workdir: Path, links: dict[str, str]) -> None:
        with open(self.path, "rb") as raw:
            stream = decompressor(cast(BinaryIO, raw), kind)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for i, m in enumerate(tar):
                    name = posixpath.normpath(m.name.lstrip("./") or ".")
                    if m.isreg():
                        src = tar.extractfile(m)
                        assert src is not None
                        dest = workdir / f"member-{i}"
                        with open(dest, "wb") as out:
                            while chunk := src.read(1 << 20):
                                out.write(chunk)
                        if dest.stat().st_size != m.size:
                            raise ValueError(f"member {m.name} is truncated")
                        self.refs[name] = BlobRef(dest, 0, m.size)
                    elif m.issym() or m.islnk():
                        base = posixpath.dirname(name) if m.issym() else ""
                        links[name] = posixpath.normpath(posixpath.join(base, m.linkname))

    def get(self, name: str) -> BlobRef:
        ref = self.refs.get(posixpath.normpath(name.lstrip("./")))
        if ref is None:
            raise ImageError(f"{self.path} lacks {name}", "the archive is incomplete or corrupt")
        return ref

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.get(name).read())
        except ValueError as exc:
            raise ImageError(f"{name} in {self.path} is not valid JSON", "corrupt archive") from exc


def read_image(
    path: Path, workdir: Path, name: str | None = None, tag: str | None = None
) -> BaseImage:
    """Open the base image in ``path``; ``name`` and ``tag`` pick one of several."""
    if not path.exists():
        raise ImageError(f"fromImage {path} does not exist", "fix the path in the spec")
    if path.is_dir():
        return _read_oci(_DirMembers(path), path, name, tag)
    members = _Members(path, workdir)
    if "manifest.json" in members.refs:
        return _read_docker(members, path, name, tag)
    if "index.json" in members.refs:
        return _read_oci(members, path, name, tag)
    raise ImageError(
        f"{path} is not an image archive (no manifest.json or index.json)",
        "give a docker-archive (docker save) or an OCI archive",
    )


class _DirMembers(_Members):
    def __init__(self, path: Path):
        self.path = path
        self.refs = {
            str(p.relative_to(path)): BlobRef.whole(p) for p in path.rglob("*") if p.is_file()
        }


def _pick_tags(name: str | None, tag: str | None) -> str | None:
    # The manual: name and tag select an image only together; either alone -> first image.
    return f"{name}:{tag}" if name and tag else None


def _layers(members: _Members, config: dict[str, Any], paths: list[str], path: Path) -> list[Layer]:
    diff_ids = config.get("rootfs", {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(paths):
        raise ImageError(
            f"{path}: the config lists {len(diff_ids or [])} diff_ids for {len(paths)} layers",
            "the archive is corrupt",
        )
    layers = []
    for diff_id, member in zip(diff_ids, paths, strict=True):
        ref = members.get(member)
        with ref.open() as f:
            head = f.read(min(4, ref.size))
        layers.append(Layer(diff_id, ref, sniff(head)))
    return layers


def _read_docker(members: _Members, path: Path, name: str | None, tag: str | None) -> BaseImage:
    manifest = members.json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageError(f"{path}: manifest.json lists no image", "the archive is corrupt")
    wanted = _pick_tags(name, tag)
    entry = manifest[0]
    if wanted:
        matches = [e for e in manifest if wanted in (e.get("RepoTags") or [])]
        if not matches:
            have = sorted(t for e in manifest for t in (e.get("RepoTags") or []))
            raise ImageError(
                f"{path} has no image {wanted}",
                f"it has: {', '.join(have) or 'untagged images only'}",
            )
        entry = matches[0]
    try:
        config = members.json(entry["Config"])
        layer_paths = list(entry["Layers"])
    except (KeyError, TypeError) as exc:
        raise ImageError(f"{path}: manifest.json is malformed ({exc})", "corrupt archive") from exc
    layers = _layers(members, config, layer_paths, path)
    return BaseImage(config, layers, list(entry.get("RepoTags") or []))


def _read_oci(members: _Members, path: Path, name: str | None, tag: str | None) -> BaseImage:
    index = members.json("index.json")
    descs = index.get("manifests") or []
    if not descs:
        raise ImageError(f"{path}: index.json lists no image", "the archive is corrupt")
    desc = descs[0]
    if name and tag:
        refs = {f"{name}:{tag}", tag}
        matches = [d for d in descs if refs & set((d.get("annotations") or {}).values())]
        if not matches:
            raise ImageError(f"{path} has no image {name}:{tag}", "check fromImageName/Tag")
        desc = matches[0]
    manifest = members.json(f"blobs/{desc['digest'].replace(':', '/')}")
    while manifest.get("mediaType") in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in manifest:
        arch = host_goarch()
        options = [
            m
            for m in manifest.get("manifests", [])
            if (m.get("platform") or {}).get("architecture") == arch
        ]
        if not options:
            raise ImageError(f"{path} has no image for {arch}", "pick an archive for this host")
        manifest = members.json(f"blobs/{options[0]['digest'].replace(':', '/')}")
    config = members.json(f"blobs/{manifest['config']['digest'].replace(':', '/')}")
    paths = [f"blobs/{d['digest'].replace(':', '/')}" for d in manifest["layers"]]
    layers = _layers(members, config, paths, path)
    for layer, d in zip(layers, manifest["layers"], strict=True):
        layer.known_digest = d["digest"]
    tags = [
        a
        for d in descs
        for a in [(d.get("annotations") or {}).get("io.containerd.image.name")]
        if a
    ]
    return BaseImage(config, layers, tags)
