"""Layer entries of Debian packages: each package's members (read from its payload in
the cache, :class:`~vmbuild.oci.tree.BlobSource`) and its dpkg ``info`` files; the
merged-/usr links; the image's ``var/lib/dpkg/status``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from vmbuild.debian import debfile, dpkgdb
from vmbuild.oci.tree import BlobSource

INFO = "var/lib/dpkg/info"
SCRIPTS = tuple(name for name in debfile.CONTROL_FILES if name != "control")
EXECUTABLE = ("preinst", "postinst", "prerm", "postrm", "config")
Entries = dict[str, BlobSource]
_DIR = stat.S_IFDIR | 0o755
STATUS_FORMAT = "1"  # change when dpkgdb.status_paragraph writes other text


def _file(path: Path) -> BlobSource:
    return BlobSource(path, stat.S_IFREG | 0o644, size=path.stat().st_size)


def _generated(unpacked: Path, name: str, data: bytes) -> Path:
    """A dpkg file made once beside the package's payload (the cache entry)."""
    path = unpacked / "dpkg" / name
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def package_entries(unpacked: Path) -> Entries:
    """Every member of the package, then its ``info/<pkg>.list`` and ``.md5sums``."""
    payload = unpacked / "payload"
    out: Entries = {}
    paths = []
    for m in debfile.read_member_fields(unpacked):  # (no DebMember made: 6,000 an image)
        group = f"{unpacked.name}:{m['link_group']}" if m["link_group"] else ""
        out[m["name"]] = BlobSource(
            payload,
            m["mode"],
            m["uid"],
            m["gid"],
            m["size"],
            m["offset"],
            m["linkname"],
            m["rdev"],
            group,
        )
        paths.append(m["path"])
    info = dpkgdb.info_name(dpkgdb.control_of(unpacked))
    out[f"{INFO}/{info}.list"] = _file(_generated(unpacked, "list", dpkgdb.list_of(paths)))
    for name in SCRIPTS:  # what dpkg keeps of the control archive
        path = unpacked / "control" / name
        if path.is_file():
            entry = _file(path)
            if name in EXECUTABLE:
                entry = dataclasses.replace(entry, mode=stat.S_IFREG | 0o755)
            out[f"{INFO}/{info}.{name}"] = entry
    return out


def _status_paragraph(unpacked: Path, status: str) -> str:
    """The package's paragraph of the status file, made once beside its payload."""
    key = hashlib.sha256(f"{STATUS_FORMAT}\n{status}".encode()).hexdigest()[:16]
    path = unpacked / "dpkg" / f"status-{key}"
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        text = dpkgdb.status_paragraph(unpacked, status)
        _generated(unpacked, path.name, text.encode("utf-8", "surrogateescape"))
        return text


def usr_links(entries: Iterable[Entries], anchor: Path) -> Entries:
    """``bin`` -> ``usr/bin`` (and sbin, lib, lib64, ...) for each such directory the
    packages ship, as a merged-/usr Debian has them."""
    used = {
        name.split("/")[1]
        for e in entries
        for name in e
        if name.startswith("usr/") and name.count("/") >= 1
    }
    return {
        top: BlobSource(anchor, stat.S_IFLNK | 0o777, linkname=f"usr/{top}")
        for top in debfile.MERGED
        if top in used
    }


def status_entries(unpacked: Iterable[Path], workdir: Path, status: str = dpkgdb.STATUS) -> Entries:
    """``var/lib/dpkg/status`` for the packages (written in ``workdir``) and dpkg's
    other directories."""
    data = dpkgdb.status_file(unpacked, status, _status_paragraph)
    path = workdir / f"dpkg-status-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    out: Entries = {"var/lib/dpkg/status": _file(path)}
    for d in ("var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives"):
        out[d] = BlobSource(path, _DIR)
    return out
