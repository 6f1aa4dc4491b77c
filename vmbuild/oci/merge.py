"""Flatten an image's layers into one tar on the host, without unpacking anything.

The layers are applied as a container runtime unpacks them (see :mod:`vmbuild.oci.rootfs`:
names resolved inside the image's root, whiteouts hiding what lower layers put there) and
the resulting tree is written sorted (see :mod:`vmbuild.oci.retar`) with its owners,
modes, xattrs and links, and no whiteouts. Every member name and link target is checked
first (no absolute paths, no ``..``, no symlinks climbing out of the root).
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from vmbuild.errors import ImageError
from vmbuild.oci.compress import decompressor
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.layer import Packed
from vmbuild.oci.layercheck import CheckedBlob
from vmbuild.oci.retar import Entry, pack_entries, reading_tar
from vmbuild.oci.rootfs import Rootfs


def open_plain(
    layer: Layer, n: int, workdir: Path, stack: contextlib.ExitStack[bool | None]
) -> BinaryIO:
    """A seekable stream of exactly the layer's plain tar (it ends where the layer ends).

    A plain layer in a file (inside an uncompressed archive, say) is read in place;
    anything else is spooled (and decompressed) into ``workdir`` first. A base layer
    (:class:`CheckedBlob`) is checked on the way: digest, diff_id and member names.
    """
    blob = layer.blob
    if isinstance(blob, CheckedBlob):
        if layer.compression == "none":
            blob.verify()
            return stack.enter_context(blob.ref.reader())
        plain = workdir / f"merge-layer-{n}.tar"
        with open(plain, "wb") as dest:
            blob.plain_to(dest)
        return stack.enter_context(plain.open("rb"))
    if not isinstance(blob, BlobRef):
        spooled = workdir / f"merge-blob-{n}"
        with open(spooled, "wb") as out:
            blob.copy_to(out)
        blob = BlobRef.whole(spooled)
    if layer.compression == "none":
        return stack.enter_context(blob.reader())
    plain = workdir / f"merge-layer-{n}.tar"
    with blob.reader() as raw, open(plain, "wb") as dest:
        shutil.copyfileobj(decompressor(raw, layer.compression), dest, 1 << 20)
    return stack.enter_context(plain.open("rb"))


def open_layers(
    layers: Sequence[Layer], workdir: Path, stack: contextlib.ExitStack[bool | None]
) -> list[tarfile.TarFile]:
    """Each layer's plain tar, open for reading until ``stack`` closes."""
    try:
        return [
            stack.enter_context(
                tarfile.open(fileobj=open_plain(layer, n, workdir, stack), mode="r:")
            )
            for n, layer in enumerate(layers)
        ]
    except (tarfile.TarError, EOFError) as exc:
        raise ImageError(f"a layer is not a readable tar ({exc})", "the image is corrupt") from exc


def merged_entries(tars: Sequence[tarfile.TarFile]) -> dict[str, Entry]:
    """The members of the flattened image; ``tars`` are the layers, bottom first."""
    fs = Rootfs()
    for n, tar in enumerate(tars):
        fs.apply(tar, n, f"layer {n + 1}")
    return fs.entries()


def flatten(layers: Sequence[Layer], sink: BinaryIO, workdir: Path, mtime: int) -> Packed:
    """Write the merged filesystem of ``layers`` (bottom first) as one plain tar."""
    with contextlib.ExitStack() as stack, reading_tar("a layer is", "the image is corrupt"):
        entries = merged_entries(open_layers(layers, workdir, stack))
        return pack_entries(entries, sink, mtime=mtime)
