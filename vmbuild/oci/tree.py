"""The file tree of a new layer, gathered from host paths the way `rsync -a src/ /` would.

A :class:`Tree` maps layer paths (``usr/bin/env``, no leading slash) to the host path
that provides each entry. Several roots merge in order, later ones winning for files,
directories merging. ``keep_dirlinks`` follows the manual's keepContentsDirlinks:
False (rsync -k) turns a source symlink to a directory into a real directory; True
(rsync -K) copies it as a symlink, and a later root's directory of the same name is
merged into the directory the symlink points at.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from vmbuild.errors import SpecError


class Source(NamedTuple):
    """One layer entry: ``host`` is read with lstat, or stat when ``follow`` is set."""

    host: Path
    follow: bool = False

    def stat(self) -> os.stat_result:
        return os.stat(self.host) if self.follow else os.lstat(self.host)


@dataclass(frozen=True)
class BlobSource:
    """One layer entry whose metadata is given, not read from the host: a member of a
    Debian package. A regular file's bytes are ``size`` bytes of ``host`` from
    ``offset`` (a content-addressed payload in the cache, never the member's own name);
    entries sharing a ``link_group`` are one file (the first in the layer holds the
    data, the others are tar hard links to it)."""

    host: Path
    mode: int  # file type and permission bits
    uid: int = 0
    gid: int = 0
    size: int = 0
    offset: int = 0
    linkname: str = ""
    rdev: int = 0
    link_group: str = ""
    follow: bool = False

    def stat(self) -> os.stat_result:
        nlink = 2 if self.link_group else 1
        return os.stat_result(
            (self.mode, self.offset, 0, nlink, self.uid, self.gid, self.size, 0, 0, 0),
            {"st_rdev": self.rdev, "st_mtime_ns": 0, "st_ctime_ns": 0},
        )


Entry = Source | BlobSource


@dataclass
class Tree:
    entries: dict[str, Entry] = field(default_factory=dict)
    # The file type of each entry as gathered (S_IFMT bits), so that merging roots does
    # not lstat every parent of every entry again; packing stats each entry afresh.
    _types: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def add_root(self, root: Path, *, keep_dirlinks: bool = False, prefix: str = "") -> None:
        """Merge the contents of ``root`` (a directory, or a single file) at ``prefix``."""
        try:
            st = os.stat(root)
        except OSError as exc:
            raise SpecError(
                f"copyToRoot path {root} does not exist or cannot be read ({exc.strerror})",
                "fix the path in the spec (relative paths resolve against the spec's directory)",
            ) from exc
        if not stat.S_ISDIR(st.st_mode):
            name = posixpath.join(prefix, root.name) if prefix else root.name
            self._put(name, Source(root, follow=root.is_symlink()), keep_dirlinks)
            return
        self._walk(root, prefix, keep_dirlinks, {os.path.realpath(root)})

    def add_file(self, name: str, host: Path) -> None:
        self._put(name, Source(host), False)

    def _walk(self, directory: Path, prefix: str, keep: bool, active: set[str]) -> None:
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise SpecError(
                f"cannot read directory {directory}: {exc.strerror}",
                "make it readable by the user running vmbuild",
            ) from exc
        for child in children:
            name = posixpath.join(prefix, child.name) if prefix else child.name
            host = Path(child.path)
            if child.is_symlink() and not keep and child.is_dir(follow_symlinks=True):
                real = os.path.realpath(host)
                if real in active:
                    raise SpecError(
                        f"symlink loop in copyToRoot at {host}",
                        "remove the loop or set keepContentsDirlinks = true",
                    )
                self._put(name, Source(host, follow=True), keep, stat.S_IFDIR)
                self._walk(host, name, keep, active | {real})
            elif child.is_dir(follow_symlinks=False):
                name = self._put(name, Source(host), keep, stat.S_IFDIR)
                self._walk(host, name, keep, active)
            else:
                self._put(name, Source(host), keep, _type_of(child))

    def _put(self, name: str, src: Entry, keep: bool, kind: int | None = None) -> str:
        """Record ``name`` (of file type ``kind``, if known); returns where its children
        go (differs under a kept dirlink)."""
        name = self._resolve_parent_links(name) if keep else name
        if kind is None:
            kind = stat.S_IFMT(src.stat().st_mode)
        old = self.entries.get(name)
        new_is_dir = kind == stat.S_IFDIR
        if old is not None:
            old_kind = self._kind(name, old)
            if keep and new_is_dir and old_kind == stat.S_IFLNK:
                target = self._link_target(name, old)
                if target is not None:
                    return target
            if old_kind == stat.S_IFDIR and not new_is_dir:
                self._drop_children(name)
        self.entries[name] = src
        self._types[name] = kind
        return name

    def _link_target(self, name: str, src: Entry) -> str | None:
        """The in-tree directory a symlink entry points at, if it is one."""
        link = src.linkname if isinstance(src, BlobSource) else os.readlink(src.host)
        base = posixpath.dirname(name)
        target = posixpath.normpath(
            link.lstrip("/") if link.startswith("/") else posixpath.join(base, link)
        )
        if target.startswith("..") or target == ".":
            return None
        entry = self.entries.get(target)
        if entry is not None and self._kind(target, entry) == stat.S_IFDIR:
            return target
        return None

    def _kind(self, name: str, src: Entry) -> int:
        """The file type of entry ``name`` (looked up once: entries given to the
        constructor were not gathered here)."""
        kind = self._types.get(name)
        if kind is None:
            kind = self._types[name] = stat.S_IFMT(src.stat().st_mode)
        return kind

    def _resolve_parent_links(self, name: str) -> str:
        parts = name.split("/")
        out: list[str] = []
        for part in parts[:-1]:
            cur = "/".join([*out, part])
            entry = self.entries.get(cur)
            if entry is not None and self._kind(cur, entry) == stat.S_IFLNK:
                target = self._link_target(cur, entry)
                if target is not None:
                    out = target.split("/")
                    continue
            out.append(part)
        out.append(parts[-1])
        return "/".join(out)

    def _drop_children(self, name: str) -> None:
        prefix = name + "/"
        for key in [k for k in self.entries if k.startswith(prefix)]:
            del self.entries[key]
            self._types.pop(key, None)

    def sorted_names(self) -> list[str]:
        return sorted(self.entries, key=lambda n: n.split("/"))


def _type_of(entry: os.DirEntry[str]) -> int:
    """The file type of a directory entry that is not a directory (no syscall when the
    directory listing says it)."""
    if entry.is_symlink():
        return stat.S_IFLNK
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG
    return stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode)


def from_roots(roots: Iterable[Path], keep_dirlinks: bool = False) -> Tree:
    tree = Tree()
    for root in roots:
        tree.add_root(root, keep_dirlinks=keep_dirlinks)
    return tree
