"""A docker-archive written while its layers are being packed.

Members come in the order ``vmbuild.oci.archive.write_docker_archive`` uses (each
distinct layer as ``<diff_id hex>/layer.tar``, then the config, ``manifest.json`` and
``repositories``), so the bytes are the same; the difference is that a layer's diff_id
is found just before the layer is written, by helper threads that measure the layers
ahead of the writer. The first bytes go out after the first layer is measured, and
memory stays bounded whatever the image's size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from vmbuild.layers.lazy import LazyLayer
from vmbuild.oci.archive import docker_manifest
from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import Image, Layer
from vmbuild.oci.tarstream import TarStreamWriter

# (every layer of the image, indices of the new layers kept) -> the image
Finish = Callable[[list[Layer], list[int]], Image]


def write_streaming(
    base: Sequence[Layer],
    new: Sequence[LazyLayer],
    finish: Finish,
    sink: BinaryIO,
    mtime: int,
) -> Image:
    """Write base layers, then ``new`` ones as they are measured, then the metadata.

    A new layer identical to one already in the image (a library the base image has
    from the same host) is left out. ``finish`` gets the image's layers (diff_ids
    known) and which of ``new`` were kept, and returns the image to describe.
    """
    tar = TarStreamWriter(sink, mtime)
    written: set[str] = set()
    layers: list[Layer] = []

    def add(diff_id: str, size: int, produce: Callable[[BinaryIO], object]) -> bool:
        hexid = hex_of(diff_id)
        if hexid in written:
            return False
        written.add(hexid)
        tar.add_stream(f"{hexid}/layer.tar", size, produce)
        return True

    for layer in base:
        add(layer.diff_id, layer.blob.size, layer.blob.copy_to)
        layers.append(layer)
    # Two measurers: hashing (which drops the GIL) is the slower half of a cold stream.
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vmbuild-measure")
    try:
        futures: list[Future[tuple[str, int]]] = [pool.submit(lz.measure) for lz in new]
        kept: list[int] = []
        for i, (lazy, future) in enumerate(zip(new, futures, strict=True)):
            diff_id, size = future.result()
            if add(diff_id, size, lazy.copy_to):
                layers.append(Layer(diff_id, lazy, "none", diff_id))
                kept.append(i)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    image = finish(layers, kept)
    config = image.config_bytes()
    tar.add_bytes(f"{hex_of(of_bytes(config))}.json", config)
    tar.add_bytes("manifest.json", docker_manifest(image))
    top = hex_of(image.layers[-1].diff_id) if image.layers else ""
    repositories = {image.name: {image.tag: top}}
    tar.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tar.close()
    return image
