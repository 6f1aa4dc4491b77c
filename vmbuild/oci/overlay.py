"""Whiteouts between the image format and overlayfs, rewritten as tar streams.

Image layers mark deletions with ``.wh.NAME`` files and replaced directories with a
``.wh..wh..opq`` member. overlayfs marks them with a 0:0 character device named NAME
and a ``trusted.overlay.opaque=y`` xattr on the directory. Base layers reach the guest as
ext4 lowers (:mod:`vmbuild.vm.lowers`, through :meth:`vmbuild.oci.rootfs.Rootfs.lower`);
:func:`from_overlay` turns the guest's upper directory, packed by GNU tar, back into a
layer. Nothing is unpacked on the host; every name is checked (see ``safety``).
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO

from vmbuild.oci.compress import Compression
from vmbuild.oci.layer import Packed
from vmbuild.oci.layout import OPAQUE, WHITEOUT
from vmbuild.oci.retar import Entry, entries_of, index, pack_entries, reading_tar

OPAQUE_XATTR = "SCHILY.xattr.trusted.overlay.opaque"
OVERLAY_XATTRS = "SCHILY.xattr.trusted.overlay."


def layer_entries(tar: tarfile.TarFile, where: str) -> dict[str, Entry]:
    entries = entries_of(tar, index(tar, where))
    out: dict[str, Entry] = {}
    for name, e in entries.items():
        info = e.info
        if info.ischr() and info.devmajor == 0 and info.devminor == 0:
            parent, base = posixpath.split(name)
            wh = posixpath.join(parent, WHITEOUT + base)
            ti = tarfile.TarInfo(wh)
            ti.mode = 0o644
            out[wh] = Entry(ti, tar)
            continue
        headers = info.pax_headers
        if headers.get(OPAQUE_XATTR) == "y" and info.isdir():
            marker = posixpath.join(name, OPAQUE)
            ti = tarfile.TarInfo(marker)
            ti.mode = 0o644
            out[marker] = Entry(ti, tar)
        info.pax_headers = {k: v for k, v in headers.items() if not k.startswith(OVERLAY_XATTRS)}
        out[name] = e
    return out


def _convert(
    src: BinaryIO,
    sink: BinaryIO,
    *,
    compression: Compression,
    mtime: int | None,
    level: int | None,
    where: str,
) -> Packed:
    with (
        reading_tar(f"{where}:", "the layer is malformed"),
        tarfile.open(fileobj=src, mode="r:") as tar,
    ):
        entries = layer_entries(tar, where)
        return pack_entries(entries, sink, mtime=mtime, compression=compression, level=level)


def from_overlay(
    src: Path, sink: BinaryIO, *, compression: Compression, mtime: int, level: int | None = None
) -> Packed:
    """The layer (deterministic, compressed as asked) of an upper dir packed by GNU tar."""
    with open(src, "rb") as f:
        return _convert(
            f,
            sink,
            compression=compression,
            mtime=mtime,
            level=level,
            where="the new layer",
        )
