"""What an image's layers hold, read as streams (never unpacked on the host).

Each layer's regular files are hashed as the tar streams past; a few named files (the
dpkg database) are kept as bytes. Names are checked as the image reader checks them
(no absolute names, no ``..``); nothing is written anywhere.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmbuild.errors import ImageError
from vmbuild.oci.compress import decompressor, sniff
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.layout import OPAQUE, WHITEOUT
from vmbuild.oci.safety import clean_name
from vmbuild.sbom.inventory import FileEntry

MAX_KEPT = 64 << 20  # a dpkg status file larger than this is not read
MAX_COPYRIGHT = 1 << 20  # nor a copyright file larger than this, for its license


@dataclass
class LayerScan:
    files: list[FileEntry] = field(default_factory=list)
    kept: dict[str, bytes] = field(default_factory=dict)  # wanted name -> its bytes
    hidden: set[str] = field(default_factory=set)  # names whited out (.wh.NAME)
    opaque: set[str] = field(default_factory=set)  # directories made opaque


def scan(layer: Layer, want: Iterable[str] = (), where: str = "layer") -> LayerScan:
    """Hash every regular file of ``layer``; keep the bytes of the names in ``want``."""
    wanted = set(want)
    out = LayerScan()
    verify = getattr(layer.blob, "verify", None)
    if verify is not None:
        verify()  # a base layer is checked (digests, names) before it is read
    ref = getattr(layer.blob, "ref", layer.blob)
    if not isinstance(ref, BlobRef):
        raise TypeError(f"{where} is not stored in a file")
    with ref.reader() as raw:
        head = raw.read(4)
        raw.seek(0)
        stream = decompressor(raw, sniff(head))
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    _member(tar, member, wanted, out, where)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageError(
                f"{where} is not a readable tar ({exc})", "the image is corrupt"
            ) from exc
    out.files.sort()
    return out


def _member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, wanted: set[str], out: LayerScan, where: str
) -> None:
    name = clean_name(member.name, where)
    directory, _, base = name.rpartition("/")
    if base == OPAQUE:
        out.opaque.add(directory)
        return
    if base.startswith(WHITEOUT):
        out.hidden.add(f"{directory}/{base[4:]}".lstrip("/"))
        return
    if not member.isreg():
        return
    f = tar.extractfile(member)
    if f is None:
        return
    h256, h1 = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)
    keep = (name in wanted and member.size <= MAX_KEPT) or (
        _is_copyright(name) and member.size <= MAX_COPYRIGHT
    )
    chunks: list[bytes] = []
    while chunk := f.read(1 << 20):
        h256.update(chunk)
        h1.update(chunk)
        if keep:
            chunks.append(chunk)
    out.files.append(FileEntry(name, h256.hexdigest(), h1.hexdigest(), member.size))
    if keep:
        out.kept[name] = b"".join(chunks)


def _is_copyright(name: str) -> bool:
    """A Debian package's copyright file (read for its license, when machine-readable)."""
    parts = name.split("/")
    return len(parts) == 5 and parts[:3] == ["usr", "share", "doc"] and parts[4] == "copyright"


def hides(scan: LayerScan, name: str) -> bool:
    """Whether a layer's whiteouts hide ``name`` of the layers below it."""
    if name in scan.hidden:
        return True
    parts = name.split("/")
    return any(
        "/".join(parts[:i]) in scan.opaque or "/".join(parts[:i]) in scan.hidden
        for i in range(1, len(parts))
    )
