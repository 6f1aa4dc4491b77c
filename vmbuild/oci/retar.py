"""Deterministic re-packing of tar members (a layer from the build VM, a merged export).

Members are written ordered by name component, with one mtime and no user/group names;
numeric owners, modes (a symlink's is 0777, as Linux has it), link targets, device
numbers and ``SCHILY.xattr.*`` records are kept. Hard links are re-pointed so that in the
new order the first name of each group carries the data and the others link to it.

One pipeline serves every rewrite (a layer from the build VM here, overlay form in
:mod:`vmbuild.oci.overlay`, a flattened image in :mod:`vmbuild.oci.merge`): a tar is
opened under :func:`reading_tar`, its members become :class:`Entry`s, and
:func:`pack_entries` writes them as a tar, compressed, hashed before and after.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from vmbuild.errors import ImageError
from vmbuild.oci.compress import Compression, compressor
from vmbuild.oci.digest import Coalescer
from vmbuild.oci.layer import Packed, open_tar
from vmbuild.oci.safety import check_member
from vmbuild.oci.sinks import HashingWriter

KEPT_PAX = "SCHILY.xattr."


@dataclass
class Entry:
    """A member to write: its metadata, and where its data (if any) is read from."""

    info: tarfile.TarInfo
    tar: tarfile.TarFile
    data: tarfile.TarInfo | None = None  # the member holding the bytes (regular files)


def index(tar: tarfile.TarFile, where: str) -> dict[str, tarfile.TarInfo]:
    """Members by clean name; unsafe names, escaping symlinks, dangling hard links fail."""
    members: dict[str, tarfile.TarInfo] = {}
    for m in tar:
        member = check_member(
            m.name,
            where,
            symlink_to=m.linkname if m.issym() else None,
            hardlink_to=m.linkname if m.islnk() else None,
        )
        name = member.name
        if not name:
            continue
        if member.hardlink_to is not None:
            m.linkname = member.hardlink_to
        members[name] = m
    for name, m in members.items():
        if m.islnk() and link_root(members, name) is None:
            raise ImageError(
                f"{where}: hard link {name} -> {m.linkname} has no target", "the layer is malformed"
            )
    return members


def link_root(members: dict[str, tarfile.TarInfo], name: str) -> str | None:
    """The regular file a hard link (chain) ends at, or None."""
    seen = set()
    while name in members and members[name].islnk():
        if name in seen:
            return None
        seen.add(name)
        name = members[name].linkname
    return name if name in members and members[name].isreg() else None


def entries_of(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> dict[str, Entry]:
    out = {}
    for name, m in members.items():
        root = link_root(members, name) if m.islnk() else None
        if m.islnk() and root is not None:
            info = m
            info.linkname = root or ""
            out[name] = Entry(info, tar, members[root])
        else:
            out[name] = Entry(m, tar, m if m.isreg() else None)
    return out


def write_entries(entries: dict[str, Entry], out: tarfile.TarFile, mtime: int | None) -> None:
    """Write ``entries`` sorted; each hard-link group's first name carries the data.

    Every mtime becomes ``mtime``, or stays as it was when that is None.
    """
    groups: dict[tuple[int, int], list[str]] = {}
    for name, e in entries.items():
        if e.data is not None and (e.info.islnk() or e.info.isreg()):
            groups.setdefault((id(e.tar), id(e.data)), []).append(name)
    carrier = {}
    for names in groups.values():
        first = min(names, key=lambda n: n.split("/"))
        for n in names:
            carrier[n] = first
    for name in sorted(entries, key=lambda n: n.split("/")):
        e = entries[name]
        m = e.info
        ti = tarfile.TarInfo(name + ("/" if m.isdir() else ""))
        # a symlink's mode is 0777 on Linux whatever its layer stored (the build VM's
        # merge shows it so; the layer writer writes it so)
        ti.mode = 0o777 if m.issym() else m.mode
        ti.uid, ti.gid = m.uid, m.gid
        ti.mtime = int(m.mtime) if mtime is None else mtime
        ti.uname = ti.gname = ""
        ti.type, ti.linkname = m.type, m.linkname
        ti.devmajor, ti.devminor = m.devmajor, m.devminor
        ti.pax_headers = {k: v for k, v in sorted(m.pax_headers.items()) if k.startswith(KEPT_PAX)}
        holder = carrier.get(name)
        if holder is not None and holder != name:
            ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, holder, 0
            out.addfile(ti)
        elif e.data is not None:
            ti.type, ti.linkname, ti.size = tarfile.REGTYPE, "", e.data.size
            out.addfile(ti, e.tar.extractfile(e.data))
        else:
            out.addfile(ti)


@contextlib.contextmanager
def reading_tar(what: str, hint: str) -> Iterator[None]:
    """A tar that cannot be read inside the block is an ImageError: ``what`` is not a
    readable tar (the reason), ``hint``."""
    try:
        yield
    except (tarfile.TarError, EOFError) as exc:
        raise ImageError(f"{what} not a readable tar ({exc})", hint) from exc


def pack_entries(
    entries: dict[str, Entry],
    sink: BinaryIO,
    *,
    mtime: int | None,
    compression: Compression = "none",
    level: int | None = None,
) -> Packed:
    """``entries`` as a deterministic tar into ``sink``, compressed as asked; the tar's
    and the blob's sha256 and sizes (the same when uncompressed: hashed once)."""
    blob = HashingWriter(sink)
    with compressor(cast(BinaryIO, blob), compression, level) as z:
        plain = blob if compression == "none" else HashingWriter(z)
        batched = Coalescer(cast(BinaryIO, plain))
        with open_tar(cast(BinaryIO, batched)) as out:
            write_entries(entries, out, mtime)
        batched.flush()
    return Packed(plain.digest, plain.size, blob.digest, blob.size)


def retar(
    src: Path,
    sink: BinaryIO,
    *,
    compression: Compression,
    mtime: int,
    level: int | None = None,
    where: str = "layer",
) -> Packed:
    """Normalise the tar at ``src`` into ``sink`` (compressed as asked)."""
    with reading_tar(f"{where}:", "the layer is malformed"), tarfile.open(src, "r:") as tar:
        entries = entries_of(tar, index(tar, where))
        return pack_entries(entries, sink, mtime=mtime, compression=compression, level=level)
