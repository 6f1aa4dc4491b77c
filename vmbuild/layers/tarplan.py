"""A layer tar planned from metadata alone: every header, where each file's data comes
from, and the tar's exact size, before any file is read.

The plan makes the very bytes :func:`vmbuild.oci.layer.write_tree` writes (same order,
same headers, same hard links, same end: two zero blocks and padding to tarfile's
10240-byte record), so a layer can be named and sized in an archive before it is
packed, and packed in one pass. Only ``lstat`` (``stat`` for followed sources),
``readlink`` and the extended attributes are read.

The plan also carries a fingerprint of that metadata (every header, and each entry's
host path, device, inode, mode, links, owners, size, mtime and ctime in nanoseconds:
a change of content or xattrs moves the ctime), and the newest of those times, so a layer's
diff_id can be remembered for an unchanged tree (:mod:`vmbuild.layers.idcache`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass, field

from vmbuild.errors import ImageError
from vmbuild.oci.fasttar import member_header
from vmbuild.oci.layer import Owner, read_xattrs, with_parents
from vmbuild.oci.tree import Source, Tree

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
FORMAT = "vmbuild-layer-v1"  # change when the bytes of a layer change for the same input


@dataclass(frozen=True)
class Member:
    """A header, then ``size`` bytes of the regular file ``host`` (none if empty)."""

    header: bytes
    host: str = ""
    size: int = 0


@dataclass
class TarPlan:
    members: list[Member] = field(default_factory=list)
    size: int = 0  # the whole tar, end blocks and record padding included
    fingerprint: str = ""  # of every entry's metadata and how it is packed
    stats: str = ""  # of every entry's ``lstat`` (a changed file changes it)
    newest_ns: int = 0  # the latest mtime or ctime of an entry

    def add(self, member: Member) -> None:
        self.members.append(member)
        self.size += len(member.header) + member.size + (-member.size % BLOCK)

    def finish(self) -> None:
        self.size += 2 * BLOCK
        self.size += -self.size % RECORD


def _info(name: str, mtime: int, uid: int, gid: int, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.mtime = mtime
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    return ti


def plan_tree(tree: Tree, mtime: int, owner: Owner) -> TarPlan:
    """The plan of ``tree`` packed as :func:`vmbuild.oci.layer.write_tree` packs it."""
    plan = TarPlan()
    links: dict[tuple[int, int], str] = {}
    names = tree.sorted_names()
    provided = set(names)
    fingerprint = hashlib.sha256(f"{FORMAT}\0{mtime}\0{owner.uid}:{owner.gid}".encode())
    stats = hashlib.sha256()
    for name, synthetic in with_parents(names):
        if synthetic:
            if name not in provided:
                ti = _info(name + "/", mtime, owner.uid or 0, owner.gid or 0, 0o755)
                ti.type = tarfile.DIRTYPE
                plan.add(Member(member_header(ti)))
            continue
        src = tree.entries[name]
        st = _stat(src)
        member = _entry(name, src, st, mtime, owner, links)
        stats.update(_stat_line(name, src, st))
        plan.newest_ns = max(plan.newest_ns, st.st_mtime_ns, st.st_ctime_ns)
        if member is not None:
            fingerprint.update(member.header)  # link targets, xattrs
            plan.add(member)
    plan.finish()
    plan.stats = stats.hexdigest()
    fingerprint.update(plan.stats.encode())
    plan.fingerprint = fingerprint.hexdigest()
    return plan


def _stat(src: Source) -> os.stat_result:
    try:
        return src.stat()
    except OSError as exc:
        raise ImageError(f"cannot read {src.host}: {exc.strerror}", "check the input") from exc


def _stat_line(name: str, src: Source, st: os.stat_result) -> bytes:
    return (
        f"{name}\0{src.host}\0{int(src.follow)}\0{st.st_dev}:{st.st_ino}:{st.st_mode}:"
        f"{st.st_nlink}:{st.st_uid}:{st.st_gid}:{st.st_size}:{st.st_mtime_ns}:"
        f"{st.st_ctime_ns}:{st.st_rdev}\0"
    ).encode("utf-8", "surrogateescape")


def stats_of(tree: Tree) -> str:
    """:attr:`TarPlan.stats` of ``tree`` as it is now (``lstat`` only: cheaper than a plan)."""
    stats = hashlib.sha256()
    for name in tree.sorted_names():
        src = tree.entries[name]
        stats.update(_stat_line(name, src, _stat(src)))
    return stats.hexdigest()


def _entry(
    name: str,
    src: Source,
    st: os.stat_result,
    mtime: int,
    owner: Owner,
    links: dict[tuple[int, int], str],
) -> Member | None:
    uid = st.st_uid if owner.uid is None else owner.uid
    gid = st.st_gid if owner.gid is None else owner.gid
    ti = _info(name, mtime, uid, gid, stat.S_IMODE(st.st_mode))
    host = os.fspath(src.host)
    ti.pax_headers = read_xattrs(host)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type = tarfile.LNKTYPE
            ti.linkname = links[key]
            return Member(member_header(ti))
        if st.st_nlink > 1:
            links[key] = name
        ti.size = st.st_size
        return Member(member_header(ti), host, st.st_size)
    if stat.S_ISDIR(mode):
        ti.name = name + "/"
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(host)
        ti.mode = 0o777
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor = os.major(st.st_rdev)
        ti.devminor = os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None  # sockets and doors cannot live in a tar: skipped, as GNU tar does
    return Member(member_header(ti))
