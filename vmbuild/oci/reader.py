"""Read a base image: docker-archive (gzip/zstd or not), OCI archive, or OCI layout dir.

Nothing from the archive is ever extracted by its own name. An uncompressed archive is
read in place (each blob is a byte range of the file); a compressed one is streamed once
and its regular members spooled to numbered files in ``workdir``. A layout directory's
files are opened without following symlinks (:func:`~vmbuild.oci.safety.open_beneath`).

Every JSON document is checked for the shape vmbuild uses (:mod:`vmbuild.oci.imagejson`)
and every digest in it against the digest grammar, where it is read: names are built
from checked digests only. Manifests and configs must match the digests that name them.
Layers are kept byte for byte; their diff_ids come from the image config, and each is
checked (digest, diff_id, member names) the first time its bytes are read
(:class:`~vmbuild.oci.layercheck.CheckedBlob`).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

from vmbuild.errors import ImageError
from vmbuild.oci import imagejson
from vmbuild.oci.compress import decompressor, sniff
from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import BlobRef, Layer, host_goarch
from vmbuild.oci.layercheck import CheckedBlob, read_errors
from vmbuild.oci.safety import open_beneath

MAX_JSON = 32 << 20  # a manifest, index or config larger than this is not one
MAX_NESTING = 4  # image indexes inside image indexes
NAMED_CONFIG = re.compile(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?")


class BaseImage(NamedTuple):
    """A base image as read: its config, layers (each a checked blob) and RepoTags."""

    config: dict[str, Any]
    layers: list[Layer]
    repo_tags: list[str]
    config_bytes: bytes | None = None  # the config as stored, where a reader keeps it


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
        except read_errors() as exc:
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

    def blob(self, digest: str) -> BlobRef:
        """The blob of a checked digest (an OCI layout's ``blobs/sha256/<hex>``)."""
        return self.get(f"blobs/sha256/{hex_of(digest)}")

    def blob_json(self, desc: imagejson.Descriptor) -> Any:
        """The JSON blob ``desc`` names, checked against its digest and size."""
        return self.json(f"blobs/sha256/{hex_of(desc.digest)}", desc.digest, desc.size)

    def raw(self, name: str, digest: str | None = None, size: int | None = None) -> bytes:
        """The bytes of the JSON member ``name``, which must match ``digest`` and ``size``
        if given (not yet parsed: a config's bytes are its image ID)."""
        ref = self.get(name)
        if ref.size > MAX_JSON:
            raise ImageError(
                f"{self.path}: {name} is {ref.size} bytes, too large for image JSON",
                "the image is corrupt or crafted",
            )
        data = ref.read()
        if digest is not None and of_bytes(data) != digest:
            raise ImageError(
                f"{self.path}: {name} does not match its digest {digest}",
                "the image is corrupt or was altered",
            )
        if size is not None and len(data) != size:
            raise ImageError(
                f"{self.path}: {name} is {len(data)} bytes, not the {size} its descriptor says",
                "the image is corrupt or was altered",
            )
        return data

    def json(self, name: str, digest: str | None = None, size: int | None = None) -> Any:
        """The JSON member ``name``, checked as :meth:`raw` does, parsed."""
        return self.parse(name, self.raw(name, digest, size))

    def parse(self, name: str, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ImageError(f"{name} in {self.path} is not valid JSON", "corrupt archive") from exc


class _DirMembers(_Members):
    """The files of an OCI layout directory, each opened without following symlinks."""

    def __init__(self, path: Path):
        self.path = path
        self.refs = {}

    def get(self, name: str) -> BlobRef:
        fd = open_beneath(self.path, name, str(self.path))
        try:
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        return BlobRef(self.path / name, 0, size, below=self.path)


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


def _pick_tags(name: str | None, tag: str | None) -> str | None:
    # The manual: name and tag select an image only together; either alone -> first image.
    return f"{name}:{tag}" if name and tag else None


def _layer(
    ref: BlobRef, diff_id: str, digest: str | None, where: str, known: bool = False
) -> Layer:
    with ref.open() as f:
        compression = sniff(f.read(min(4, ref.size)))
    blob = CheckedBlob(ref, compression, where, diff_id=diff_id, digest=digest)
    return Layer(diff_id, blob, compression, digest if known else None)


def _count_check(path: Path, diff_ids: list[str], layers: int) -> None:
    if len(diff_ids) != layers:
        raise ImageError(
            f"{path}: the config lists {len(diff_ids)} diff_ids for {layers} layers",
            "the archive is corrupt",
        )


def _one_diff_id_each(path: Path, layers: list[Layer]) -> list[Layer]:
    """The same blob listed twice must have one diff_id (writers store it once)."""
    seen: dict[object, tuple[int, str]] = {}
    for i, layer in enumerate(layers):
        blob = layer.blob
        if not isinstance(blob, CheckedBlob):
            continue
        key = blob.digest or blob.ref  # the digest a manifest gives, else the member
        n, diff_id = seen.setdefault(key, (i, layer.diff_id))
        if diff_id != layer.diff_id:
            raise ImageError(
                f"{path}: layers {n + 1} and {i + 1} are the same blob with different diff_ids",
                "the image is corrupt or crafted",
            )
    return layers


def _named_digest(member: str) -> str | None:
    """The digest a config member's name states (``<hex>.json``, ``blobs/sha256/<hex>``)."""
    m = NAMED_CONFIG.fullmatch(posixpath.normpath(member.lstrip("./")))
    return f"sha256:{m.group(1)}" if m else None


def _read_docker(members: _Members, path: Path, name: str | None, tag: str | None) -> BaseImage:
    entries = imagejson.docker_manifest(members.json("manifest.json"), str(path))
    wanted = _pick_tags(name, tag)
    entry = entries[0]
    if wanted:
        matches = [e for e in entries if wanted in e.repo_tags]
        if not matches:
            have = sorted(t for e in entries for t in e.repo_tags)
            raise ImageError(
                f"{path} has no image {wanted}",
                f"it has: {', '.join(have) or 'untagged images only'}",
            )
        entry = matches[0]
    return _docker_entry(members, path, entry)


def _docker_entry(members: _Members, path: Path, entry: imagejson.DockerEntry) -> BaseImage:
    raw = members.raw(entry.config, _named_digest(entry.config))
    config, diff_ids = imagejson.image_config(members.parse(entry.config, raw), str(path))
    _count_check(path, diff_ids, len(entry.layers))
    layers = [
        _layer(members.get(member), diff_id, None, f"{path}: layer {i + 1}")
        for i, (diff_id, member) in enumerate(zip(diff_ids, entry.layers, strict=True))
    ]
    return BaseImage(config, _one_diff_id_each(path, layers), entry.repo_tags, raw)


def read_docker_images(path: Path, workdir: Path) -> list[BaseImage]:
    """Every image of the docker-archive ``path``, in manifest.json's order, each with its
    config's bytes as stored (``config_bytes``). Its layers are checked as they are read,
    as :func:`read_image`'s are; ``workdir`` receives a compressed archive's members."""
    if not path.exists():
        raise ImageError(f"{path} does not exist", "fix the path")
    if path.is_dir():
        oci = (path / "index.json").exists()
        raise ImageError(
            f"{path} is {'an OCI layout directory' if oci else 'a directory'}, "
            "not a docker-archive",
            "give a docker-archive file (docker save, or skopeo copy to docker-archive:)",
        )
    members = _Members(path, workdir)
    if "manifest.json" not in members.refs:
        oci = "index.json" in members.refs
        raise ImageError(
            f"{path} is {'an OCI archive' if oci else 'not an image archive'}"
            f"{', not a docker-archive' if oci else ' (no manifest.json)'}",
            "give a docker-archive (docker save, or skopeo copy to docker-archive:)",
        )
    entries = imagejson.docker_manifest(members.json("manifest.json"), str(path))
    return [_docker_entry(members, path, entry) for entry in entries]


def _read_oci(members: _Members, path: Path, name: str | None, tag: str | None) -> BaseImage:
    where = str(path)
    descs = imagejson.index_manifests(members.json("index.json"), where, "index.json")
    desc = descs[0]
    if name and tag:
        refs = {f"{name}:{tag}", tag}
        matches = [d for d in descs if refs & set(d.annotations.values())]
        if not matches:
            raise ImageError(f"{path} has no image {name}:{tag}", "check fromImageName/Tag")
        desc = matches[0]
    value = members.blob_json(desc)
    for _ in range(MAX_NESTING):
        if not imagejson.is_index(value):
            break
        arch = host_goarch()
        options = [
            m
            for m in imagejson.index_manifests(value, where, "the image index")
            if m.architecture == arch
        ]
        if not options:
            raise ImageError(f"{path} has no image for {arch}", "pick an archive for this host")
        value = members.blob_json(options[0])
    else:
        raise ImageError(f"{path}: image indexes nest too deep", "the image is corrupt")
    manifest = imagejson.image_manifest(value, where)
    config, diff_ids = imagejson.image_config(members.blob_json(manifest.config), where)
    _count_check(path, diff_ids, len(manifest.layers))
    layers = []
    for i, (diff_id, d) in enumerate(zip(diff_ids, manifest.layers, strict=True)):
        ref = members.blob(d.digest)
        if d.size is not None and d.size != ref.size:
            raise ImageError(
                f"{path}: layer {i + 1} is {ref.size} bytes, not the {d.size} its descriptor says",
                "the image is corrupt or was altered",
            )
        layers.append(_layer(ref, diff_id, d.digest, f"{path}: layer {i + 1}", known=True))
    tags = [a for d in descs for a in [d.annotations.get("io.containerd.image.name")] if a]
    return BaseImage(config, _one_diff_id_each(path, layers), tags)
