"""Content units: named host-file trees that reference each other (Nix's store paths).

- A file unit is one host file at its canonical path, named by that path. An ELF file
  references the units of its interpreter and of each library it needs; a script
  references its ``#!`` interpreter.
- A link unit is one symlink met while resolving a path the way the kernel does
  (``/lib64``, ``/usr/lib64/ld-linux-x86-64.so.2``, ``/lib``), so every entry of every
  unit sits under a real directory and layers never disagree about what a path is.
- A helper unit holds what an environment helper adds beyond the file units it
  references (``/bin/sh`` for binSh, ``/etc/passwd`` for fakeNss).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vmbuild.errors import SpecError
from vmbuild.oci.tree import Source, Tree
from vmbuild.units.elf import LD_SO_CACHE, ElfInfo, LibrarySearch, read_elf


@dataclass
class Unit:
    name: str
    entries: dict[str, Source] = field(default_factory=dict)
    refs: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        total = 0
        for src in self.entries.values():
            st = src.stat()
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
        return total


def tree_of(units: Iterable[Unit]) -> Tree:
    """One layer's tree: the entries of ``units`` merged."""
    tree = Tree()
    for unit in units:
        tree.entries.update(unit.entries)
    return tree


@dataclass
class Graph:
    """The unit graph of one image, grown by :meth:`path` and :meth:`tree`."""

    search: LibrarySearch = field(default_factory=LibrarySearch.host)
    units: dict[str, Unit] = field(default_factory=dict)
    resolved: dict[str, list[str]] = field(default_factory=dict)
    links: dict[str, str | None] = field(default_factory=dict)  # see :func:`resolve`
    read_elf: Callable[[str], ElfInfo | None] = read_elf  # or an ElfCache's

    def path(self, path: str, why: str) -> list[str]:
        """The units needed to open ``path`` in the image: each link met, then the file."""
        path = os.path.abspath(path)
        known = self.resolved.get(path)
        if known is not None:
            return known
        met, real = resolve(path, self.links)
        names = [self._link(link) for link in met]
        if not os.path.lexists(real):
            raise SpecError(f"{why}: {path} does not exist on this host", "install it")
        names.append(self._file(real, why))
        self.resolved[path] = names
        return names

    def _link(self, link: str) -> str:
        if link not in self.units:
            self.units[link] = Unit(link, {link.lstrip("/"): Source(Path(link))})
        return link

    def _file(self, real: str, why: str) -> str:
        if real in self.units:
            return real
        unit = Unit(real, {real.lstrip("/"): Source(Path(real))})
        self.units[real] = unit
        if not os.path.isfile(real):
            return real
        if not os.access(real, os.R_OK):
            raise SpecError(f"{why}: {real} is not readable", "make it readable by this user")
        info = self.read_elf(real)
        if info is not None:
            if info.interp:
                unit.refs.update(self.path(info.interp, f"{real} (its interpreter)"))
            for soname in info.needed:
                found = self.search.find(soname, real, info)
                unit.refs.update(self.path(found.path, real))
                if found.needs_cache:
                    unit.refs.update(self.path(str(LD_SO_CACHE), real))
        else:
            interp = shebang(real)
            if interp and os.path.isabs(interp) and os.path.exists(interp):
                unit.refs.update(self.path(interp, f"{real} (its #! interpreter)"))
        unit.refs.discard(real)
        return real

    def tree(self, name: str, tree: Tree) -> str:
        """Add a unit holding ``tree``; its ELF files bring their closures as references."""
        unit = Unit(name, dict(tree.entries))
        self.units[name] = unit
        for _rel, src in sorted(tree.entries.items()):
            st = src.stat()
            if stat.S_ISREG(st.st_mode) and self.read_elf(str(src.host)) is not None:
                unit.refs.update(self.path(str(src.host), name))
        return name

    def _through_links(self, rel: str) -> str:
        """``rel`` with leading directories that are link units replaced by their targets."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            prefix = "/" + "/".join(parts[:i])
            unit = self.units.get(prefix)
            if unit is not None and os.path.islink(prefix) and os.path.isdir(prefix):
                real = os.path.realpath(prefix).lstrip("/")
                return self._through_links("/".join([real, *parts[i:]]))
        return rel

    def settle_trees(self, names: Iterable[str]) -> None:
        """Make tree units ``names`` agree with the file and link units.

        An entry under a directory that a link unit makes a symlink (a helper's ``bin/sh``
        when ``/bin`` -> ``usr/bin`` is in the image) moves to where the link points, and
        entries another unit already holds are dropped, so no path is in two layers.
        """
        keep = set(names)
        owned = {rel for u in self.units.values() if u.name not in keep for rel in u.entries}
        for name in sorted(keep):
            unit = self.units[name]
            moved: dict[str, Source] = {}
            for rel, src in unit.entries.items():
                rel = self._through_links(rel)
                if rel not in owned:
                    moved.setdefault(rel, src)
            unit.entries = moved
            unit.refs.discard(name)
            owned.update(moved)

    def relocate(self, tree: Tree) -> Tree:
        """``tree`` (the customisation layer) with entries under link units moved to the
        links' targets, and directories where a link unit puts a symlink dropped: a
        directory in a later layer would hide the link (``/lib``) the loader goes through.
        """
        out = Tree()
        for rel, src in tree.entries.items():
            link = "/" + rel
            if link in self.units and os.path.islink(link) and stat.S_ISDIR(src.stat().st_mode):
                continue
            out.entries.setdefault(self._through_links(rel), src)
        return out

    def provides(self, path: str) -> bool:
        """Whether some unit already holds ``path`` (an absolute image path)."""
        rel = self._through_links(path.lstrip("/"))
        return any(rel in u.entries for u in self.units.values())

    def refs(self) -> dict[str, set[str]]:
        return {name: set(u.refs) for name, u in self.units.items()}


def links_met(path: str) -> list[str]:
    """Every symlink the kernel meets resolving the absolute ``path``, in order.

    Each is named at its real location: ``/lib64/ld-linux-x86-64.so.2`` on a merged-/usr
    host meets ``/lib64``, ``/usr/lib64/ld-linux-x86-64.so.2`` and ``/lib``.
    """
    return resolve(path)[0]


def _link_target(path: str, links: dict[str, str | None]) -> str | None:
    if path not in links:
        try:
            links[path] = os.readlink(path) if stat.S_ISLNK(os.lstat(path).st_mode) else None
        except OSError:
            links[path] = None
    return links[path]


def resolve(path: str, links: dict[str, str | None] | None = None) -> tuple[list[str], str]:
    """(:func:`links_met`, the real path) of the absolute ``path``; ``links`` remembers
    which paths are symlinks to where, across calls."""
    links = {} if links is None else links
    met: list[str] = []
    pending = [p for p in path.split("/") if p and p != "."]
    pending.reverse()
    current = ""
    while pending:
        part = pending.pop()
        if part == "..":
            current = current.rsplit("/", 1)[0]
            continue
        nxt = f"{current}/{part}"
        target = _link_target(nxt, links)
        if target is not None:
            if len(met) >= 40:
                raise SpecError(f"too many symlinks resolving {path}", "fix the link loop")
            met.append(nxt)
            if target.startswith("/"):
                current = ""
            pending.extend(reversed([p for p in target.split("/") if p and p != "."]))
            continue
        current = nxt
    return met, current or "/"


def shebang(path: str) -> str | None:
    """The interpreter a ``#!`` script names, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode("utf-8", "surrogateescape") if words else None


def config_programs(config: Mapping[str, object]) -> list[str]:
    """Host executables an image config's Entrypoint or Cmd names (absolute paths)."""
    found: list[str] = []
    for key in ("Entrypoint", "Cmd"):
        value = config.get(key)
        if not isinstance(value, list):
            continue
        for arg in value:
            if (
                isinstance(arg, str)
                and arg.startswith("/")
                and os.path.isfile(arg)
                and os.access(arg, os.X_OK)
                and arg not in found
            ):
                found.append(arg)
    return found
