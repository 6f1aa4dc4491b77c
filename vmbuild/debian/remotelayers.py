"""Layered images' Debian layers through the remote caches (``--cache-from``/``--cache-to``).

A layer cut from Debian package units alone has a key that costs nothing to know: its
bytes depend only on the packages' .debs (their SHA256s are in the lock), which units
it holds in which order, its mtime and owner, vmbuild's tar format
(:data:`vmbuild.oci.tarplan.FORMAT`) and the code that reads packages into entries (its
source is hashed into every key), and the dpkg status unit on the lock's packages and
whether dpkg configures them. Two kinds of entries, both checked as they stream
(:mod:`vmbuild.remotecache.artifact`):

- ``debcontent-KEY`` (KEY: the lock's packages and the status mode): every package's
  layer entries without their bytes (names, modes, owners, sizes, link targets), as
  JSON. With it a runner builds the same unit graph and cuts the same layers as the one
  that fetched the packages, without fetching them.
- ``deblayer-KEY``: one packed layer and its diff_id.

A build with remote caches reads (or makes) the lock as always, then asks for
``debcontent``; each layer of Debian units alone is then asked for as ``deblayer`` and
a hit is used as it is: not packed, and its packages not fetched. Any miss (or a layer
mixing Debian and host units) fetches the packages after all, the usual way, and packs
from them. With ``--cache-to`` each Debian layer is packed once into a file (hashed as
it is written), the image streams that file, and the entries are pushed after the
output is in place. Without remote caches nothing here runs.

Host-path units get no such key: their bytes are known only by reading the files (the
diff_id cache knows a tree by device, inode and ctime, which differ on every runner),
and hashing them to make a key costs what packing them does.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stat import S_ISLNK
from typing import TYPE_CHECKING, Any

from vmbuild.cache import cache_dir, key
from vmbuild.debian.build import (
    STATUS_UNIT,
    USR_UNIT,
    DebContent,
    Pinned,
    content_of,
    deb_content,
    deb_lock,
)
from vmbuild.debian.lock import Request
from vmbuild.debian.packages import Settings
from vmbuild.errors import ImageError
from vmbuild.oci.blocks import BlockWriter
from vmbuild.oci.digest import of_file
from vmbuild.oci.layer import Owner
from vmbuild.oci.safety import check_member, clean_name
from vmbuild.oci.tarplan import FORMAT as TAR_FORMAT
from vmbuild.oci.tree import BlobSource
from vmbuild.streaming.lazy import FileLayer, LazyLayer, TreeLayer
from vmbuild.units.graph import Unit, tree_of

if TYPE_CHECKING:  # the registry client: not loaded by builds without remote caches
    from vmbuild.remotecache import artifact
    from vmbuild.remotecache.remotes import Remotes

CONTENT = "debcontent"
LAYER = "deblayer"
FORMAT = "1"  # bump when an entry's meaning changes
FETCHES = 4  # layers fetched at once


class CachedLayer(FileLayer):
    """A packed layer in a file whose diff_id is known (checked when it was fetched, or
    hashed when it was packed)."""

    def __init__(self, path: Path, diff_id: str, weight: int = 0):
        super().__init__(path)
        self.diff_id = diff_id
        self.weight = weight

    def known_diff_id(self) -> str | None:
        return self.diff_id


# The modules that turn a package into its entries and the dpkg status. They have no
# format version of their own, so their source is part of the content key: a change
# there can never reuse entries an older vmbuild made.
_ENTRY_CODE = ("content", "dpkgdb", "debfile")


@functools.cache
def _code() -> str:
    from vmbuild import debian

    root = Path(debian.__file__).parent
    return key((root / f"{name}.py").read_bytes() for name in _ENTRY_CODE)


def content_key(pinned: Pinned) -> str:
    packages = sorted(f"{p.name}={p.sha256}" for p in pinned.lock.packages)
    mode = "configure" if pinned.configure else "installed"
    return key([FORMAT, _code(), pinned.settings.architecture, mode, *packages])


# -- debcontent: the packages' entries without their bytes ------------------------------


def _place(host: Path, workdir: Path) -> list[str]:
    for tag, root in (("w", workdir), ("c", cache_dir())):
        if host.is_relative_to(root):
            return [tag, str(host.relative_to(root))]
    return ["a", str(host)]


def _entries_json(entries: dict[str, BlobSource], workdir: Path) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, e in entries.items():
        where = _place(e.host, workdir)
        rows.append([name, where, e.mode, e.uid, e.gid, e.size, e.offset, e.linkname])
        rows[-1] += [e.rdev, e.link_group, e.follow]
    return rows


def _entries_of(rows: Any, workdir: Path) -> dict[str, BlobSource]:
    """The entries of a ``debcontent`` entry's rows: each name as a layer may hold it
    (:func:`~vmbuild.oci.safety.check_member`), each host file inside this runner's
    cache or work dir (an entry naming ``/etc/shadow`` would put it in the image)."""
    from vmbuild.remotecache import artifact

    roots = {"c": cache_dir(), "w": workdir}
    out: dict[str, BlobSource] = {}
    for name, (tag, where), mode, uid, gid, size, offset, link, rdev, group, follow in rows:
        values = (mode, uid, gid, size, offset, rdev)
        texts = (name, where, link, group)
        ok = all(isinstance(t, str) for t in texts) and isinstance(follow, bool) and tag in roots
        if not ok or not all(isinstance(v, int) for v in values):
            raise artifact.BadEntry(f"the {CONTENT} entry has a bad row for {name!r}")
        try:
            check_member(name, f"the {CONTENT} entry", symlink_to=link if S_ISLNK(mode) else None)
            if clean_name(where, f"the {CONTENT} entry's file") != where or not where:
                raise artifact.BadEntry(f"the {CONTENT} entry names the file {where!r}")
        except ImageError as exc:
            raise artifact.BadEntry(exc.message) from exc
        host = roots[tag] / where
        out[name] = BlobSource(host, mode, uid, gid, size, offset, link, rdev, group, follow)
    return out


def _dump(debs: DebContent, workdir: Path) -> dict[str, Any]:
    return {
        "order": debs.order,
        "architecture": debs.architecture,
        "packages": {n: _entries_json(e, workdir) for n, e in debs.packages.items()},
        "links": _entries_json(debs.links, workdir),
        "status": _entries_json(debs.status, workdir),
    }


def _load(data: Any, pinned: Pinned, workdir: Path) -> DebContent:
    from vmbuild.remotecache import artifact

    try:
        packages = {n: _entries_of(rows, workdir) for n, rows in data["packages"].items()}
        if set(packages) != {p.name for p in pinned.lock.packages}:
            raise artifact.BadEntry(f"the {CONTENT} entry holds other packages")
        out = DebContent(pinned.lock, packages, architecture=data["architecture"])
        out.links = _entries_of(data["links"], workdir)
        out.status = _entries_of(data["status"], workdir)
        out.order = [str(n) for n in data["order"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise artifact.BadEntry(f"the {CONTENT} entry does not parse ({exc})") from exc
    return out


def _current() -> Remotes | None:
    """The build's remote caches; none when nothing loaded the remote cache code (as
    ``vmbuild stream``, which has none, does not)."""
    if "vmbuild.remotecache.remotes" not in sys.modules:
        return None
    from vmbuild.remotecache.remotes import current

    return current()


class DebLayers:
    """One build's Debian layers and the remote caches (inert when there are none)."""

    def __init__(self, workdir: Path, use_remote: bool = True):
        self.workdir = workdir
        self.remotes = _current() if use_remote else None
        self.pinned: Pinned | None = None
        self.debs: DebContent | None = None
        self._real: DebContent | None = None  # fetched: the entries' bytes are there

    def content(self, s: Settings, requests: list[Request], configure: bool) -> DebContent:
        """The spec's packages as :func:`~.build.deb_content` gives them; from the
        remote caches' ``debcontent`` entry when they have it (nothing fetched)."""
        if self.remotes is None:  # each package fetched as the resolver picks it
            self.debs = self._real = deb_content(s, requests, configure, self.workdir)
            return self.debs
        from vmbuild.remotecache import artifact

        self.pinned = pinned = deb_lock(s, requests, configure)
        ckey = content_key(pinned)

        def keep(got: artifact.Got) -> None:
            (file,) = got.files
            try:
                data = json.loads(file.path.read_bytes())
            except ValueError as exc:
                raise artifact.BadEntry(f"the {CONTENT} entry is not JSON") from exc
            self.debs = _load(data, pinned, self.workdir)

        if self.remotes.fetch_entry(CONTENT, ckey, keep, layers=False) and self.debs:
            return self.debs
        self.debs = self._real = content_of(pinned, self.workdir)
        if self.remotes.cache_to:
            path = self.remotes.scratch() / f"{CONTENT}-{content_key(pinned)}.json"
            path.write_text(json.dumps(_dump(self._real, self.workdir), separators=(",", ":")))
            file = artifact.File(path, of_file(path))
            self.remotes.offer_entry(CONTENT, content_key(pinned), [file], {})
        return self.debs

    def real(self) -> DebContent | None:
        """The packages with their bytes at hand (fetched now if they were not)."""
        if self._real is None and self.pinned is not None:
            self._real = content_of(self.pinned, self.workdir)
        return self._real

    def _unit_key(self, unit: Unit) -> str | None:
        assert self.pinned is not None
        if unit.name in (USR_UNIT, STATUS_UNIT):
            return f"{unit.name}:{content_key(self.pinned)}"
        name = unit.name.removeprefix("deb:")
        for pkg in self.pinned.lock.packages:
            if unit.name == f"deb:{pkg.name}":
                return f"{name}:{pkg.sha256}"
        return None

    def _real_units(self, units: list[Unit]) -> list[Unit]:
        """``units`` with the fetched packages' entries (the graph may hold others')."""
        if self.debs is self._real or not any(u.name.startswith("deb:") for u in units):
            return units
        real = self.real()
        assert real is not None
        by_name = {f"deb:{n}": e for n, e in real.packages.items()}
        by_name[USR_UNIT], by_name[STATUS_UNIT] = real.links, real.status
        return [
            Unit(u.name, dict(by_name[u.name]), u.refs) if u.name in by_name else u for u in units
        ]

    def _layer_key(self, units: list[Unit], mtime: int, owner: Owner) -> str | None:
        """The key of the layer of ``units``; None unless they are all Debian units."""
        if self.remotes is None or self.pinned is None:
            return None
        keys = [self._unit_key(u) for u in units]
        if None in keys:
            return None
        owner_text = f"{owner.uid}:{owner.gid}:{owner.uname}:{owner.gname}"
        parts = [FORMAT, TAR_FORMAT, _code(), str(mtime), owner_text]
        return key([*parts, *(k or "" for k in keys)])

    def _fetch(self, lkey: str) -> tuple[Path, str] | None:
        """The layer ``lkey`` from the remote caches, in the scratch dir, and its diff_id."""

        assert self.remotes is not None
        dest = self.remotes.scratch() / f"{LAYER}-{lkey}.tar"
        found: list[str] = []

        def keep(got: artifact.Got) -> None:
            (file,) = got.files
            os.replace(file.path, dest)
            found.append(file.diff_id)

        fetched = self.remotes.fetch_entry(LAYER, lkey, keep, layers=True)
        return (dest, found[0]) if fetched else None

    def layers(self, groups: list[list[Unit]], mtime: int, owner: Owner) -> dict[int, LazyLayer]:
        """The layer of each group holding Debian units, by index: from the remote
        caches when it is one of Debian units alone they have (asked for all at once);
        else packed (once into a file when it goes to ``--cache-to``)."""
        lkeys = [self._layer_key(units, mtime, owner) for units in groups]
        asked = list(dict.fromkeys(k for k in lkeys if k is not None))
        got: dict[str, tuple[Path, str] | None] = {}
        if asked and self.remotes is not None:
            self.remotes.scratch()  # made once, before the threads use it
            with ThreadPoolExecutor(max_workers=min(FETCHES, len(asked))) as pool:
                try:
                    got = dict(zip(asked, pool.map(self._fetch, asked), strict=True))
                except BaseException:  # Ctrl-C: wake the other fetches, do not wait them out
                    self.remotes.interrupt()
                    raise
        out: dict[int, LazyLayer] = {}
        for i, (units, lkey) in enumerate(zip(groups, lkeys, strict=True)):
            if not any(u.name.startswith("deb:") for u in units):
                continue
            weight = sum(u.size for u in units)
            hit = got.get(lkey) if lkey is not None else None
            if hit is not None:
                out[i] = CachedLayer(hit[0], hit[1], weight)
                continue
            tree = TreeLayer(tree_of(self._real_units(units)), mtime, owner, weight=weight)
            if lkey is None or self.remotes is None or not self.remotes.cache_to:
                out[i] = tree
                continue
            out[i] = self._packed(tree, lkey, weight)
        return out

    def _packed(self, tree: TreeLayer, lkey: str, weight: int) -> CachedLayer:
        """``tree`` packed once into a file (hashed as it is written), offered to
        ``--cache-to``; the image streams the file."""
        from vmbuild.remotecache import artifact

        assert self.remotes is not None
        dest = self.remotes.scratch() / f"{LAYER}-{lkey}.tar"
        with open(dest, "wb") as f, BlockWriter(f) as out:
            digest = out.begin_hash()
            tree.write(out)
            out.end_hash()
        diff_id = out.result(digest)
        tree.remember(diff_id)
        self.remotes.offer_entry(LAYER, lkey, [artifact.File(dest, diff_id)], {})
        return CachedLayer(dest, diff_id, weight)
