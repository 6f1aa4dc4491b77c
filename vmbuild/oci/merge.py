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
from typing import BinaryIO, cast

from vmbuild.errors import ImageError
from vmbuild.oci.compress import decompressor
from vmbuild.oci.digest import Coalescer, HashingWriter
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.layer import Packed, open_tar
from vmbuild.oci.retar import Entry, write_entries
from vmbuild.oci.rootfs import Rootfs


def open_plain(
    layer: Layer, n: int, workdir: Path, stack: contextlib.ExitStack[bool | None]
) -> BinaryIO:
    """A seekable stream positioned at the start of the layer's plain tar.

    A plain layer inside an uncompressed archive is read in place; anything else is
    spooled (and decompressed) into ``workdir`` first.
    """
    blob = layer.blob
    if not isinstance(blob, BlobRef):
        spooled = workdir / f"merge-blob-{n}"
        with open(spooled, "wb") as out:
            blob.copy_to(out)
        blob = BlobRef.whole(spooled)
    f: BinaryIO
    if layer.compression == "none":
        f = stack.enter_context(blob.open())
    else:
        plain = workdir / f"merge-layer-{n}.tar"
        with blob.reader() as raw, open(plain, "wb") as dest:
            shutil.copyfileobj(decompressor(raw, layer.compression), dest, 1 << 20)
        f = stack.enter_context(plain.open("rb"))
    return f


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
    with contextlib.ExitStack() as stack:
        try:
            entries = merged_entries(open_layers(layers, workdir, stack))
            hashed = HashingWriter(sink)
            batched = Coalescer(cast(BinaryIO, hashed))
            with open_tar(cast(BinaryIO, batched)) as out:
                write_entries(entries, out, mtime)
            batched.flush()
        except (tarfile.TarError, EOFError) as exc:
            raise ImageError(
                f"a layer is not a readable tar ({exc})", "the image is corrupt"
            ) from exc
    return Packed(hashed.digest, hashed.size, hashed.digest, hashed.size)
