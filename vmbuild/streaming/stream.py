"""A docker-archive written in one pass while its layers are being packed.

Members come in the order :func:`vmbuild.oci.archive.write_docker_archive` uses (each
layer, then the config, ``manifest.json`` and ``repositories``), and the bytes are
those it writes given :func:`layer_id` names. A layer's directory is named by its
position, not its diff_id, so its header needs only its size, which the plan gives
(:meth:`LazyLayer.tar_plan`); the diff_ids are needed only by the config and manifest,
which come last, and are hashed meanwhile from the same plans by
:class:`~vmbuild.streaming.hashpool.HashPool` (or remembered: :mod:`vmbuild.streaming.idcache`).
Into a pipe, file data is spliced rather than copied (:mod:`vmbuild.streaming.fdwriter`);
any other sink gets blocks (:class:`BlockWriter`). The layer expected to be largest is
planned and handed to the pool first (its hash is the longest); the first bytes go out
once the first layer is planned, and memory stays bounded whatever the image's size.

A new layer identical to one already in the image (a library the base image has from
the same host) is left out. Only a layer whose size matches an earlier one's can be
such a copy: that layer's diff_id is waited for before it is written.

Once every byte has been written, hashed and (in a pipe) taken by the reader, every new
layer's inputs are ``lstat``-ed again: a file changed meanwhile fails the stream before
the config is written.
"""

from __future__ import annotations

import contextlib
import struct
import tarfile
from collections.abc import Callable, Sequence
from typing import BinaryIO

from vmbuild.oci.blocks import BUFFER_SIZE, BlockWriter
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.layercheck import CheckedBlob
from vmbuild.oci.metadata import config_name, docker_entry, manifest_json, repositories_json
from vmbuild.oci.sinks import TarSink
from vmbuild.oci.tarstream import TAR_BLOCK, archive_header
from vmbuild.streaming.fdwriter import FdWriter, pipe_fd
from vmbuild.streaming.hashpool import HashPool
from vmbuild.streaming.lazy import LazyLayer
from vmbuild.streaming.packing import pack

# (every layer of the image, indices of the new layers kept) -> the image
Finish = Callable[[list[Layer], list[int]], Image]
SIZE_MOD = 1 << 32  # gzip keeps the uncompressed size modulo 2**32


def layer_id(position: int) -> str:
    """The directory of the image's ``position``-th layer in the archive."""
    return f"{position + 1:064x}"


def _size_key(layer: Layer) -> int | None:
    """The size of a base layer's tar modulo 2**32, if it can be known without reading it."""
    blob = layer.blob.ref if isinstance(layer.blob, CheckedBlob) else layer.blob
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

    def __init__(self, out: TarSink, mtime: int):
        self.out = out
        self.mtime = mtime

    def header(self, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> None:
        self.out.write(archive_header(name, size, kind, self.mtime))

    def layer_header(self, directory: str, size: int) -> None:
        self.header(directory + "/", 0, tarfile.DIRTYPE)
        self.header(f"{directory}/layer.tar", size)

    def pad(self, size: int) -> None:
        self.out.zeros(-size % TAR_BLOCK)

    def add_bytes(self, name: str, data: bytes) -> None:
        self.header(name, len(data))
        self.out.write(data)
        self.pad(len(data))


class _New:
    """A new layer written to the archive, its diff_id perhaps still being hashed."""

    def __init__(self, index: int, layer: LazyLayer, known: str | None):
        self.index, self.layer, self.known = index, layer, known


def write_streaming(
    base: Sequence[Layer],
    new: Sequence[LazyLayer],
    finish: Finish,
    sink: BinaryIO,
    mtime: int,
    block_size: int = BUFFER_SIZE,
) -> tuple[Image, list[str]]:
    """Write base layers, then ``new`` ones, then the metadata; returns the image and
    each of its layers' directory in the archive.

    ``finish`` gets the image's layers (diff_ids known) and which of ``new`` were kept,
    and returns the image to describe. ``block_size``: see :class:`BlockWriter` (larger
    suits a sink that compresses).
    """
    fd = pipe_fd(sink)
    with contextlib.ExitStack() as stack:
        if fd is None:
            out: TarSink = stack.enter_context(BlockWriter(sink, block_size))
        else:
            out = FdWriter(fd)
        pool = stack.enter_context(HashPool())
        tar = _Archive(out, mtime)
        ids: list[str] = []  # each layer's directory
        written = 0  # directories so far
        layers: list[Layer | _New] = []
        by_diff_id: dict[str, str] = {}  # diff_id -> directory, for repeated base layers
        keys: dict[int, list[int]] = {}  # size key -> positions of layers with that key

        def diff_id_at(position: int) -> str:
            item = layers[position]
            return item.diff_id if isinstance(item, Layer) else _diff_id(pool, item)

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

        started = _hash_heaviest(new, pool)
        for i, lazy in enumerate(new):
            plan = lazy.tar_plan()
            item = _New(i, lazy, lazy.known_diff_id())
            if item.known is None and i != started:
                pool.submit(i, plan)
            same_size = keys.get(plan.size % SIZE_MOD, [])
            if same_size:  # perhaps a copy of an earlier layer
                expected = _diff_id(pool, item)
                if any(diff_id_at(p) == expected for p in same_size):
                    lazy.release()
                    continue
            keys.setdefault(plan.size % SIZE_MOD, []).append(len(layers))
            directory = layer_id(written)
            written += 1
            tar.layer_header(directory, plan.size)
            pack(plan, out)
            lazy.release()
            tar.pad(plan.size)
            ids.append(directory)
            layers.append(item)

        done = [item if isinstance(item, Layer) else _resolve(pool, item) for item in layers]
        if isinstance(out, FdWriter):
            out.drain()  # spliced pages are read by now: the check below covers them
        new_items = [item for item in layers if isinstance(item, _New)]
        for item in new_items:
            item.layer.verify()
            if item.known is None:
                item.layer.remember(_diff_id(pool, item))
        kept = [item.index for item in new_items]
        image = finish(done, kept)
        config = image.config_bytes()
        entry = [docker_entry(image, ids)]
        tar.add_bytes(config_name(config), config)
        tar.add_bytes("manifest.json", manifest_json(entry))
        tar.add_bytes("repositories", repositories_json(entry))
        out.zeros(2 * TAR_BLOCK)
        if isinstance(out, FdWriter):
            out.flush()
    return image, ids


def _hash_heaviest(new: Sequence[LazyLayer], pool: HashPool) -> int | None:
    """Start hashing the new layer expected to be largest, before anything is written:
    its hash is the longest, and the stream's end waits for it."""
    heaviest = max(range(len(new)), key=lambda i: new[i].weight, default=None)
    if heaviest is None or new[heaviest].weight <= 0:
        return None
    layer = new[heaviest]
    plan = layer.tar_plan()
    if layer.known_diff_id() is not None:
        return None
    pool.submit(heaviest, plan)
    return heaviest


def _copy_blob(out: TarSink, layer: Layer) -> None:
    blob = layer.blob
    if isinstance(blob, BlobRef):
        out.copy_file(blob.path, blob.size, blob.offset)
    else:  # a base layer: checked (digest, diff_id, names) as it is copied
        blob.copy_to(out)  # type: ignore[arg-type]


def _diff_id(pool: HashPool, item: _New) -> str:
    return item.known if item.known is not None else pool.diff_id(item.index)


def _resolve(pool: HashPool, item: _New) -> Layer:
    diff_id = _diff_id(pool, item)
    return Layer(diff_id, item.layer, "none", diff_id)
