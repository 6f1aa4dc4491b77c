"""A docker-archive written in one pass while its layers are being packed.

Members come in the order :func:`vmbuild.oci.archive.write_docker_archive` uses (each
layer, then the config, ``manifest.json`` and ``repositories``), and the bytes are
those it writes given :func:`layer_id` names. A layer's directory is named by its
position, not its diff_id, so its header needs only its size, which the plan gives
(:meth:`LazyLayer.plan`); the diff_id is hashed while the layer is written and is
needed only by the config and manifest, which come last. The first bytes go out as
soon as the first block is full, and memory stays bounded whatever the image's size.

A new layer identical to one already in the image (a library the base image has from
the same host) is left out. Only a layer whose size matches an earlier one's can be
such a copy: that layer alone is hashed before it is written (a second pass), unless
its diff_id is remembered (:mod:`vmbuild.layers.idcache`): then it is not hashed at all.
"""

from __future__ import annotations

import json
import struct
import tarfile
from collections.abc import Callable, Sequence
from typing import BinaryIO

from vmbuild.errors import ImageError
from vmbuild.layers.blocks import BLOCK_SIZE, BlockWriter, Digest
from vmbuild.layers.lazy import HINT, LazyLayer, copy_file, diff_id_of
from vmbuild.oci.archive import docker_manifest
from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.tarstream import archive_header

# (every layer of the image, indices of the new layers kept) -> the image
Finish = Callable[[list[Layer], list[int]], Image]
BLOCK = tarfile.BLOCKSIZE
SIZE_MOD = 1 << 32  # gzip keeps the uncompressed size modulo 2**32


def layer_id(position: int) -> str:
    """The directory of the image's ``position``-th layer in the archive."""
    return f"{position + 1:064x}"


def _size_key(layer: Layer) -> int | None:
    """The size of a base layer's tar modulo 2**32, if it can be known without reading it."""
    blob = layer.blob
    if layer.compression == "none":
        return blob.size % SIZE_MOD
    if layer.compression == "gzip" and isinstance(blob, BlobRef) and blob.size >= 18:
        with blob.open() as f:
            f.seek(blob.offset + blob.size - 4)
            (isize,) = struct.unpack("<I", f.read(4))
            return int(isize)
    return None  # zstd: a new copy of such a layer is kept (a valid, larger image)


class _Archive:
    """The outer tar's headers (the bytes :class:`TarStreamWriter` writes)."""

    def __init__(self, out: BlockWriter, mtime: int):
        self.out = out
        self.mtime = mtime

    def header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        self.out.write(archive_header(name, size, kind, self.mtime))

    def layer_header(self, directory: str, size: int) -> None:
        self.header(directory + "/", 0, tarfile.DIRTYPE)
        self.header(f"{directory}/layer.tar", size)

    def pad(self, size: int) -> None:
        self.out.zeros(-size % BLOCK)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.header(name, len(data))
        self.out.write(data)
        self.pad(len(data))


class _New:
    """A new layer written to the archive, its diff_id still being hashed."""

    def __init__(
        self, index: int, layer: LazyLayer, size: int, digest: Digest | None, expected: str | None
    ):
        self.index, self.layer, self.size = index, layer, size
        self.digest, self.expected = digest, expected


def write_streaming(
    base: Sequence[Layer],
    new: Sequence[LazyLayer],
    finish: Finish,
    sink: BinaryIO,
    mtime: int,
    block_size: int = BLOCK_SIZE,
) -> tuple[Image, list[str]]:
    """Write base layers, then ``new`` ones, then the metadata; returns the image and
    each of its layers' directory in the archive.

    ``finish`` gets the image's layers (diff_ids known) and which of ``new`` were kept,
    and returns the image to describe. ``block_size``: see :class:`BlockWriter` (larger
    suits a sink that compresses).
    """
    with BlockWriter(sink, block_size) as out:
        tar = _Archive(out, mtime)
        ids: list[str] = []  # each layer's directory
        written = 0  # directories so far
        layers: list[Layer | _New] = []
        by_diff_id: dict[str, str] = {}  # diff_id -> directory, for repeated base layers
        keys: dict[int, list[int]] = {}  # size key -> positions of layers with that key

        def diff_id_at(position: int) -> str:
            item = layers[position]
            return item.diff_id if isinstance(item, Layer) else _diff_id(out, item)

        for layer in base:
            if layer.diff_id in by_diff_id:  # written once, listed twice
                ids.append(by_diff_id[layer.diff_id])
                layers.append(layer)
                continue
            by_diff_id[layer.diff_id] = directory = layer_id(written)
            written += 1
            key = _size_key(layer)
            if key is not None:
                keys.setdefault(key, []).append(len(layers))
            tar.layer_header(directory, layer.blob.size)
            _copy_blob(out, layer)
            tar.pad(layer.blob.size)
            ids.append(directory)
            layers.append(layer)

        for i, lazy in enumerate(new):
            size = lazy.plan()
            known = lazy.known_diff_id()
            expected = known
            same_size = keys.get(size % SIZE_MOD, [])
            if same_size:  # perhaps a copy of an earlier layer: its diff_id first
                if expected is None:
                    expected = diff_id_of(lazy)
                    size = lazy.plan()  # (a size changed meanwhile fails below)
                if any(diff_id_at(p) == expected for p in same_size):
                    continue
            keys.setdefault(size % SIZE_MOD, []).append(len(layers))
            directory = layer_id(written)
            written += 1
            tar.layer_header(directory, size)
            if known is None:
                digest: Digest | None = out.begin_hash()
                lazy.write(out)
                out.end_hash()
            else:  # remembered for this very tree: no need to hash it
                digest = None
                lazy.write(out)
            tar.pad(size)
            ids.append(directory)
            layers.append(_New(i, lazy, size, digest, expected))

        done = [_resolve(out, item) for item in layers]
        kept = [item.index for item in layers if isinstance(item, _New)]
        image = finish(done, kept)
        config = image.config_bytes()
        tar.add_bytes(f"{hex_of(of_bytes(config))}.json", config)
        tar.add_bytes("manifest.json", docker_manifest(image, ids))
        repositories = {image.name: {image.tag: ids[-1] if ids else ""}}
        tar.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
        out.zeros(2 * BLOCK)
    return image, ids


def _copy_blob(out: BlockWriter, layer: Layer) -> None:
    blob = layer.blob
    if isinstance(blob, BlobRef):
        copy_file(out, blob.path, blob.size, blob.offset)
    else:  # pragma: no cover - base layers are file ranges
        blob.copy_to(out)  # type: ignore[arg-type]


def _diff_id(out: BlockWriter, item: _New) -> str:
    if item.digest is None:
        assert item.expected is not None
        return item.expected
    diff_id = out.result(item.digest)
    if item.digest.size != item.size or (item.expected and diff_id != item.expected):
        raise ImageError(
            f"a file of the image changed while it was being written (layer {item.index})", HINT
        )
    return diff_id


def _resolve(out: BlockWriter, item: Layer | _New) -> Layer:
    if isinstance(item, Layer):
        return item
    diff_id = _diff_id(out, item)
    if item.digest is not None:
        item.layer.remember(diff_id)
    return Layer(diff_id, item.layer, "none", diff_id)
