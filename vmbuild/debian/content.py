"""Layer entries of Debian packages: each package's members and its dpkg ``info``
files (ranges of its entry in the cache, :class:`~vmbuild.oci.tree.BlobSource`); the
merged-/usr links; the image's ``var/lib/dpkg/status``."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterable
from pathlib import Path

from vmbuild.debian import debfile, dpkgdb
from vmbuild.debian.lock import Locked
from vmbuild.oci.tree import BlobSource

INFO = "var/lib/dpkg/info"
SCRIPTS = tuple(name for name in debfile.CONTROL_FILES if name != "control")
EXECUTABLE = ("preinst", "postinst", "prerm", "postrm", "config")
Entries = dict[str, BlobSource]
_DIR = stat.S_IFDIR | 0o755


def _file(path: Path) -> BlobSource:
    return BlobSource(path, stat.S_IFREG | 0o644, size=path.stat().st_size)


def package_entries(unpacked: Path, pkg: Locked) -> Entries:
    """Every member of the package ``pkg`` (read into ``unpacked``), then its
    ``info/<pkg>.list`` and ``.md5sums``, named as the lock names it."""
    record = debfile.record_of(unpacked)
    if record["package"] != pkg.name:  # (its control file was checked when it was read)
        raise debfile.DebError(
            f"{unpacked} holds package {record['package']!r}, not {pkg.name}",
            "delete it: the next build reads the package again",
        )
    out: Entries = {}
    for name, _, mode, uid, gid, size, offset, linkname, rdev, link_group in record["members"]:
        group = f"{unpacked.name}:{link_group}" if link_group else ""
        out[name] = BlobSource(unpacked, mode, uid, gid, size, offset, linkname, rdev, group)
    info = dpkgdb.info_name(pkg.name, pkg.multi_arch, pkg.architecture)
    at, size = record["list"]
    out[f"{INFO}/{info}.list"] = BlobSource(unpacked, stat.S_IFREG | 0o644, size=size, offset=at)
    for name in SCRIPTS:  # what dpkg keeps of the control archive
        where = debfile.control_file(unpacked, name)
        if where is not None:
            at, size, _ = where
            perms = 0o755 if name in EXECUTABLE else 0o644
            out[f"{INFO}/{info}.{name}"] = BlobSource(
                unpacked, stat.S_IFREG | perms, size=size, offset=at
            )
    return out


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
    records = [debfile.record_of(u) for u in unpacked]
    data = dpkgdb.status_file((r["package"], r["status"][status]) for r in records)
    path = workdir / f"dpkg-status-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    out: Entries = {"var/lib/dpkg/status": _file(path)}
    for d in ("var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives"):
        out[d] = BlobSource(path, _DIR)
    return out
