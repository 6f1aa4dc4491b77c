"""Image writers: docker-archive (what `docker save` writes), OCI layout, OCI archive.

- docker-archive: one tar holding each layer as ``<diff_id hex>/layer.tar`` (stored as
  given: base layers byte for byte), the config as ``<config sha256>.json``,
  ``manifest.json`` (Config, RepoTags, Layers) and the legacy ``repositories`` file.
  Members come layers first, metadata last, so the archive can be streamed. A writer
  may name the layer directories otherwise (``layer_ids``): docker load, podman,
  skopeo and umoci find layers through manifest.json's ``Layers``. Several images can
  share one archive (:func:`write_docker_images`): each layer and config stored once,
  manifest.json listing every image.
- OCI layout: ``oci-layout``, ``index.json`` and ``blobs/sha256/*``; the index names the
  manifest with ``org.opencontainers.image.ref.name`` = tag (what ``skopeo copy
  oci:DIR:TAG`` looks up) and ``io.containerd.image.name`` = name:tag.
- OCI archive: the same layout as one tar.

The metadata's bytes come from :mod:`vmbuild.oci.metadata`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import Image, Layer
from vmbuild.oci.layout import MT_OCI_MANIFEST
from vmbuild.oci.metadata import (
    OCI_LAYOUT,
    DockerEntry,
    config_name,
    descriptor_of,
    docker_entry,
    image_index,
    image_manifest,
    manifest_json,
    repositories_json,
)
from vmbuild.oci.tarstream import TarStreamWriter

if TYPE_CHECKING:
    from vmbuild.oci.referrers import Artifact


def write_docker_archive(
    image: Image, sink: BinaryIO, mtime: int, layer_ids: Sequence[str] | None = None
) -> None:
    """Write ``image`` as a docker-archive (uncompressed tar) to ``sink``.

    ``layer_ids`` names each layer's directory (a repeated id is written once).
    """
    write_docker_images([docker_entry(image, layer_ids)], sink, mtime)


def write_docker_images(entries: Sequence[DockerEntry], sink: BinaryIO, mtime: int) -> None:
    """Write several images as one docker-archive (uncompressed tar) to ``sink``: every
    layer directory and config once (the first entry's blob for a repeated layer id),
    then manifest.json listing the entries in order, and ``repositories``."""
    tar = TarStreamWriter(sink, mtime)
    written: set[str] = set()
    for e in entries:
        _add_layers(tar, e.layer_ids, e.image.layers, written)
    for e in entries:
        config = e.image.config_bytes()
        name = config_name(config)
        if name not in written:
            written.add(name)
            tar.add_bytes(name, config)
    tar.add_bytes("manifest.json", manifest_json(entries))
    tar.add_bytes("repositories", repositories_json(entries))
    tar.close()


def _add_layers(
    tar: TarStreamWriter, layer_ids: Sequence[str], layers: Sequence[Layer], written: set[str]
) -> None:
    for layer_id, layer in zip(layer_ids, layers, strict=True):
        if layer_id not in written:
            written.add(layer_id)
            name = f"{layer_id}/layer.tar"
            tar.add_stream(name, layer.blob.size, layer.blob.copy_to)


def oci_index(image: Image, manifest: bytes, referrers: Sequence[Artifact] = ()) -> bytes:
    """The layout's index: the image, then its referrer artifacts (no ``ref.name``)."""
    from vmbuild.oci.referrers import artifact_manifest, index_entry  # OCI only

    subject = descriptor_of(MT_OCI_MANIFEST, manifest)
    more = [index_entry(a, artifact_manifest(a, subject)) for a in referrers]
    return image_index(image, manifest, more)


def _extra_blobs(manifest: bytes, referrers: Sequence[Artifact]) -> list[bytes]:
    from vmbuild.oci.referrers import blobs_of

    return blobs_of(referrers, descriptor_of(MT_OCI_MANIFEST, manifest))


def write_oci_archive(
    image: Image, sink: BinaryIO, mtime: int, referrers: Sequence[Artifact] = ()
) -> None:
    """Write ``image`` (and ``referrers`` attached to it) as an OCI archive to ``sink``."""
    config, manifest = image_manifest(image)
    tar = TarStreamWriter(sink, mtime)
    tar.add_bytes("oci-layout", OCI_LAYOUT)
    written: set[str] = set()
    for layer in image.layers:
        if layer.digest in written:
            continue
        written.add(layer.digest)
        tar.add_stream(f"blobs/sha256/{hex_of(layer.digest)}", layer.blob.size, layer.blob.copy_to)
    for blob in (config, manifest, *_extra_blobs(manifest, referrers)):
        name = f"blobs/sha256/{hex_of(of_bytes(blob))}"
        if name not in written:
            written.add(name)
            tar.add_bytes(name, blob)
    tar.add_bytes("index.json", oci_index(image, manifest, referrers))
    tar.close()


def write_oci_layout(image: Image, directory: Path, referrers: Sequence[Artifact] = ()) -> None:
    """Write an OCI image layout into ``directory`` (which must not exist yet), with
    ``referrers`` attached to the image."""
    config, manifest = image_manifest(image)
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (directory / "oci-layout").write_bytes(OCI_LAYOUT)
    for layer in image.layers:
        target = blobs / hex_of(layer.digest)
        if not target.exists():
            with open(target, "wb") as f:
                layer.blob.copy_to(f)
    for blob in (config, manifest, *_extra_blobs(manifest, referrers)):
        (blobs / hex_of(of_bytes(blob))).write_bytes(blob)
    (directory / "index.json").write_bytes(oci_index(image, manifest, referrers))
    for path in sorted(directory.rglob("*")):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished layout directory into place, replacing an older one.

    An older layout is swapped with the new one in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), so ``final`` always names a whole layout, then removed.
    """
    if not final.exists():
        os.rename(tmp, final)
        return
    if exchange(tmp, final):
        shutil.rmtree(tmp)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the kernel or file system cannot."""
    import ctypes  # here: only a build that replaces an older output needs it

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(done == 0)
