"""A layer tar planned from metadata alone: every header, where each file's data comes
from, and the tar's exact size, before any file is read.

The members are :func:`vmbuild.oci.layer.members`' (the mapping
:func:`~vmbuild.oci.layer.pack` packs), so a planned layer has the very bytes a
packed one has, and can be named and sized in an archive before it is packed, and packed
in one pass. Only ``lstat`` (``stat`` for followed sources), ``readlink`` and the
extended attributes are read.

The plan also carries a fingerprint of that metadata (every header, and each entry's
host path, device, inode, mode, links, owners, size, mtime and ctime in nanoseconds:
a change of content or xattrs moves the ctime), and the newest of those times, so a layer's
diff_id can be remembered for an unchanged tree (:mod:`vmbuild.streaming.idcache`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from vmbuild.cache import file_identity
from vmbuild.oci.inputs import cannot_read
from vmbuild.oci.layer import Member, Owner, end_size, members
from vmbuild.oci.tarstream import TAR_BLOCK
from vmbuild.oci.tree import Entry, Tree

__all__ = ["FORMAT", "Member", "TarPlan", "plan_tree", "stats_of"]

FORMAT = "vmbuild-layer-v1"  # change when the bytes of a layer change for the same input


@dataclass
class TarPlan:
    members: list[Member] = field(default_factory=list)
    size: int = 0  # the whole tar, end blocks and record padding included
    fingerprint: str = ""  # of every entry's metadata and how it is packed
    stats: str = ""  # of every entry's ``lstat`` (a changed file changes it)
    newest_ns: int = 0  # the latest mtime or ctime of an entry

    def add(self, member: Member) -> None:
        self.members.append(member)
        self.size += len(member.header) + member.size + (-member.size % TAR_BLOCK)

    def finish(self) -> None:
        self.size += end_size(self.size)


def plan_tree(tree: Tree, mtime: int, owner: Owner) -> TarPlan:
    """The plan of ``tree`` packed as :func:`vmbuild.oci.layer.pack` packs it."""
    plan = TarPlan()
    fingerprint = hashlib.sha256(f"{FORMAT}\0{mtime}\0{owner.uid}:{owner.gid}".encode())
    stats = hashlib.sha256()

    def seen(name: str, src: Entry, st: os.stat_result) -> None:
        stats.update(_stat_line(name, src, st))
        plan.newest_ns = max(plan.newest_ns, st.st_mtime_ns, st.st_ctime_ns)

    for member in members(tree, mtime, owner, seen):
        fingerprint.update(member.header)  # link targets, xattrs
        plan.add(member)
    plan.finish()
    plan.stats = stats.hexdigest()
    fingerprint.update(plan.stats.encode())
    plan.fingerprint = fingerprint.hexdigest()
    return plan


def _stat_line(name: str, src: Entry, st: os.stat_result) -> bytes:
    return (
        f"{name}\0{src.host}\0{int(src.follow)}\0{file_identity(st)}:{st.st_mode}:"
        f"{st.st_nlink}:{st.st_uid}:{st.st_gid}:{st.st_rdev}\0"
    ).encode("utf-8", "surrogateescape")


def stats_of(tree: Tree) -> str:
    """:attr:`TarPlan.stats` of ``tree`` as it is now (``lstat`` only: cheaper than a plan)."""
    stats = hashlib.sha256()
    for name in tree.sorted_names():
        src = tree.entries[name]
        try:
            st = src.stat()
        except OSError as exc:
            raise cannot_read(src.host, exc) from exc
        stats.update(_stat_line(name, src, st))
    return stats.hexdigest()
