"""The tree a container runtime unpacks from an image's layers, kept as tar members.

Layers are applied bottom first, each member in its order in the tar, as ``umoci unpack``
does. The directory a member goes into is looked up inside the image's root, following
the symlinks met on the way there (an absolute target starts again from the root, ``..``
stops at the root, at most 255 links), and directories missing on the way are made (0755,
owned by root). A member below a non-directory is an error. A member replaces whatever
is at its name, except that a directory over a directory keeps what is in it. ``.wh.NAME``
hides NAME and ``.wh..wh..opq`` everything in its directory, but only what lower layers
put there: the layer's own members, and the directories holding them, stay; a whiteout
whose directory does not exist does nothing. So no name in the result is below a symlink
or a non-directory, whatever the layers say.

What one layer changed (:meth:`Rootfs.apply`) is also that layer's lower in the build
VM's overlay (:meth:`Rootfs.lower`): the members it set and every directory above them,
and a 0:0 character device (overlayfs's whiteout) for each lower name it took away. Both
merges therefore see the same tree.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from vmbuild.errors import ImageError
from vmbuild.oci.layout import OPAQUE, WHITEOUT
from vmbuild.oci.retar import Entry, index
from vmbuild.oci.safety import clean_name, whiteout_target

OVERLAY_XATTRS = "SCHILY.xattr.trusted.overlay."
MAX_LINKS = 255  # as the kernel's and umoci's lookups
MALFORMED = "the layer is malformed"


def _info(type_: bytes, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo()
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type_, mode, 0, 0, 0
    return ti


class Node:
    """A name in the tree: its member, the layer that set it, and (directories) children.

    ``mark`` is the last layer that set this node or anything below it; that layer's
    whiteouts leave it in place.
    """

    __slots__ = ("children", "entry", "layer", "mark")

    def __init__(self, entry: Entry, layer: int, is_dir: bool):
        self.entry = entry
        self.layer = layer
        self.mark = layer
        self.children: dict[str, Node] | None = {} if is_dir else None


@dataclass
class Change:
    """What one layer did: the paths it set, and the subtrees it took away."""

    layer: int
    tar: tarfile.TarFile
    set: list[str] = field(default_factory=list)
    removed: list[tuple[str, Node]] = field(default_factory=list)


def _walk(path: str, node: Node) -> Iterator[tuple[str, Node]]:
    """``node`` (at ``path``) and everything below it, parents first."""
    todo = [(path, node)]
    while todo:
        p, n = todo.pop()
        yield p, n
        for name, child in (n.children or {}).items():
            todo.append((posixpath.join(p, name), child))


class Rootfs:
    """The tree so far: the root directory's children."""

    def __init__(self) -> None:
        self.root: dict[str, Node] = {}

    def get(self, path: str) -> Node | None:
        """The node at a resolved path (no symlinks are followed)."""
        children: dict[str, Node] | None = self.root
        node = None
        for part in path.split("/"):
            node = children.get(part) if children is not None else None
            if node is None:
                return None
            children = node.children
        return node

    def entries(self) -> dict[str, Entry]:
        """Every member of the tree by name."""
        return {p: n.entry for name, top in self.root.items() for p, n in _walk(name, top)}

    def apply(self, tar: tarfile.TarFile, n: int, where: str) -> Change:
        """Unpack layer ``n`` (its members checked by ``index`` first) onto the tree."""
        index(tar, where)
        change = Change(n, tar)
        for m in tar.getmembers():
            name = clean_name(m.name, where)
            if not name:
                continue
            parent, base = posixpath.split(name)
            if base.startswith(WHITEOUT):
                self._whiteout(name, parent, base, change, where)
            else:
                self._set(name, parent, base, self._entry(tar, m, name, n, where), change, where)
        return change

    def lower(self, change: Change) -> dict[str, Entry]:
        """The layer of ``change`` as an overlay lower over the layers applied before it."""
        out: dict[str, Entry] = {}

        def with_parents(path: str, entry: Entry) -> None:
            out[path] = entry
            parent = posixpath.dirname(path)
            while parent and parent not in out:
                node = self.get(parent)
                assert node is not None
                out[parent] = node.entry
                parent = posixpath.dirname(parent)

        for path in change.set:
            node = self.get(path)
            if node is not None and node.layer == change.layer:
                with_parents(path, node.entry)
        device = _info(tarfile.CHRTYPE, 0)
        todo = list(change.removed)
        while todo:  # a whiteout for each lower name gone from a directory that stays
            path, old = todo.pop()
            if self.get(path) is not None:
                todo.extend((posixpath.join(path, n), c) for n, c in (old.children or {}).items())
                continue
            parent = posixpath.dirname(path)
            above = self.get(parent) if parent else None
            if not parent or (above is not None and above.children is not None):
                with_parents(path, Entry(device, change.tar))
        return out

    def _entry(
        self, tar: tarfile.TarFile, m: tarfile.TarInfo, name: str, n: int, where: str
    ) -> Entry:
        if any(k.startswith(OVERLAY_XATTRS) for k in m.pax_headers):
            m.pax_headers = {
                k: v for k, v in m.pax_headers.items() if not k.startswith(OVERLAY_XATTRS)
            }
        if m.ischr() and m.devmajor == 0 and m.devminor == 0:
            raise ImageError(
                f"{where}: {name} is a 0:0 character device (overlayfs's whiteout mark)",
                "image layers mark deletions with .wh. files; the layer is malformed",
            )
        if m.isreg():
            return Entry(m, tar, m)
        if not m.islnk():
            return Entry(m, tar, None)
        parent, base = posixpath.split(m.linkname)
        found = self._dir(parent, n, where, m.linkname, None)
        node = found[0].get(base) if found else None
        if node is None or node.layer != n or node.entry.data is None:
            raise ImageError(
                f"{where}: hard link {name} -> {m.linkname} has no target in its layer",
                MALFORMED,
            )
        return Entry(m, node.entry.tar, node.entry.data)

    def _dir(
        self, path: str, n: int, where: str, name: str, change: Change | None
    ) -> tuple[dict[str, Node], str] | None:
        """The children and resolved path of directory ``path``, resolved inside the root.

        With ``change``, missing directories are made (a non-directory is an error) and
        marked as holding something of layer ``n``; without, None when it is not there.
        """
        todo = [p for p in reversed(path.split("/")) if p]
        names: list[str] = []
        chain: list[dict[str, Node] | None] = [self.root]  # each name's children, if any
        links = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if names:
                    names.pop()
                    chain.pop()
                continue
            here = chain[-1]
            node = here.get(part) if here is not None else None
            if node is not None and node.entry.info.issym():
                links += 1
                if links > MAX_LINKS:
                    raise ImageError(
                        f"{where}: {name}: too many levels of symbolic links", MALFORMED
                    )
                target = node.entry.info.linkname
                todo.extend(p for p in reversed(target.split("/")) if p)
                if target.startswith("/"):
                    names, chain = [], [self.root]
                continue
            names.append(part)
            chain.append(node.children if node is not None else None)
        children = self.root
        for i, part in enumerate(names):
            node = children.get(part)
            if node is None:
                if change is None:
                    return None
                made = Entry(_info(tarfile.DIRTYPE, 0o755), change.tar)
                node = children[part] = Node(made, n, True)
                change.set.append("/".join(names[: i + 1]))
            elif node.children is None:
                if change is None:
                    return None
                raise ImageError(
                    f"{where}: {name} is below {'/'.join(names[: i + 1])}, "
                    "which is not a directory",
                    MALFORMED,
                )
            if change is not None:
                node.mark = n
            assert node.children is not None
            children = node.children
        return children, "/".join(names)

    def _set(
        self, name: str, parent: str, base: str, entry: Entry, change: Change, where: str
    ) -> None:
        found = self._dir(parent, change.layer, where, name, change)
        assert found is not None
        children, resolved = found
        path = posixpath.join(resolved, base)
        old = children.get(base)
        if old is not None and old.children is not None and entry.info.isdir():
            old.entry, old.layer, old.mark = entry, change.layer, change.layer
        else:
            if old is not None:
                change.removed.append((path, old))
            children[base] = Node(entry, change.layer, entry.info.isdir())
        change.set.append(path)

    def _whiteout(self, name: str, parent: str, base: str, change: Change, where: str) -> None:
        targets = None if base == OPAQUE else [whiteout_target(name, base, where)]
        found = self._dir(parent, change.layer, where, name, None)
        if found is None:
            return
        children, resolved = found
        todo = [(children, resolved, t) for t in (targets or list(children))]
        while todo:
            here, at, t = todo.pop()
            node = here.get(t)
            if node is None:
                continue
            path = posixpath.join(at, t)
            if node.mark == change.layer:  # this layer's own, or holding some of it
                below = node.children or {}
                todo.extend((below, path, c) for c in below)
                continue
            del here[t]
            change.removed.append((path, node))
