"""Flatten an image's layers into one tar on the host, without unpacking anything.

Layers are read top first. A member shadows the same name in lower layers; a
``.wh.NAME`` whiteout hides NAME below it; ``.wh..wh..opq`` hides everything below
its directory; a non-directory hides whatever lower layers put under its name. The
surviving members are written sorted (see :mod:`vmbuild.oci.retar`) with their owners,
modes, xattrs and links, and no whiteouts. Every member name and link target is checked
first (no absolute paths, no ``..``, no symlinks climbing out of the root).
"""

from __future__ import annotations

import contextlib
import posixpath
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
from vmbuild.oci.layercheck import CheckedBlob
from vmbuild.oci.retar import Entry, entries_of, index, write_entries

WH = ".wh."
OPAQUE = ".wh..wh..opq"


def _ancestors(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


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


def merged_entries(tars: Sequence[tarfile.TarFile]) -> dict[str, Entry]:
    """The members of the flattened image; ``tars`` are the layers, bottom first."""
    final: dict[str, Entry] = {}
    hidden: set[str] = set()
    opaque: set[str] = set()
    for n in range(len(tars) - 1, -1, -1):
        where = f"layer {n + 1}"
        layer_hidden: set[str] = set()
        layer_opaque: set[str] = set()
        for name, entry in entries_of(tars[n], index(tars[n], where)).items():
            parent, base = posixpath.split(name)
            if base == OPAQUE:
                layer_opaque.add(parent)
                continue
            if base.startswith(WH):
                layer_hidden.add(posixpath.join(parent, base[len(WH) :]))
                continue
            if name in final or name in hidden:
                continue
            above = _ancestors(name)
            if any(
                a in hidden or a in opaque or (a in final and not final[a].info.isdir())
                for a in above
            ):
                continue
            final[name] = entry
        hidden |= layer_hidden
        opaque |= layer_opaque
    return final


def flatten(layers: Sequence[Layer], sink: BinaryIO, workdir: Path, mtime: int) -> Packed:
    """Write the merged filesystem of ``layers`` (bottom first) as one plain tar."""
    with contextlib.ExitStack() as stack:
        try:
            tars = [
                stack.enter_context(
                    tarfile.open(fileobj=open_plain(layer, n, workdir, stack), mode="r:")
                )
                for n, layer in enumerate(layers)
            ]
            entries = merged_entries(tars)
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
