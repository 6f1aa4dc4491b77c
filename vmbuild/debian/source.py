"""Debian packages as a content source: this module is the source
(:class:`vmbuild.sources.Source`). The spec's item ``{ deb = "name", version = "..." }``
(a :class:`~vmbuild.debian.lock.Request`: one name rule with the lock's) and its optional
``[debian]`` table (where packages come from: every key may be left out, the build takes
it from the host's apt configuration, :mod:`vmbuild.debian.packages`); a build's
packages are :class:`Packages` (:mod:`vmbuild.debian.build`, through the remote caches
by :mod:`vmbuild.debian.remotelayers`). Light to import: the rest loads when a build
uses a package."""

from __future__ import annotations

import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild.debian.lock import NAME, VERSION, Request
from vmbuild.errors import SpecError
from vmbuild.sources import GuestStep, Item, SpecFields

if TYPE_CHECKING:
    from vmbuild.debian.build import DebContent
    from vmbuild.debian.packages import Settings
    from vmbuild.debian.remotelayers import DebLayers
    from vmbuild.oci.layer import Owner
    from vmbuild.oci.tree import Tree
    from vmbuild.sbom.attest import Record
    from vmbuild.sbom.inventory import Component
    from vmbuild.streaming.lazy import LazyLayer
    from vmbuild.units.graph import Graph, Unit

# stdenv's base tools as Debian packages, for shell images whose inputs are packages
toolset: tuple[Item, ...] = tuple(
    Request(name)
    for name in (
        *("bash", "coreutils", "tar", "gzip", "sed", "grep", "findutils", "diffutils"),
        *("patch", "bzip2", "xz-utils", "mawk"),
    )
)
_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class DebianTable:
    lock: Path
    suite: str | None = None
    mirror: str | None = None
    components: tuple[str, ...] = ("main",)
    keyring: Path | None = None
    recommends: bool = False
    essential: bool = False
    configure: bool = False
    check_valid_until: bool = True


def parse_item(value: Any, place: str) -> Request | None:
    """``{ deb = ..., version = ... }`` as a Request; None when ``value`` is not one."""
    if not isinstance(value, dict) or "deb" not in value:
        return None
    extra = set(value) - {"deb", "version"}
    if extra:
        raise SpecError(
            f"{place}: unknown key {sorted(extra)[0]!r}",
            'write { deb = "redis-server" } or { deb = "bash", version = "5.2.15-2+b2" }',
        )
    name, version = value["deb"], value.get("version")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpecError(f"{place}: deb = {name!r} is not a Debian package name", "fix the name")
    if version is not None and (not isinstance(version, str) or not VERSION.fullmatch(version)):
        raise SpecError(f"{place}: version = {version!r} is not a Debian version", "fix it")
    return Request(name, version)


def parse_table(spec: SpecFields, sub: SpecFields | None) -> DebianTable:
    """The ``[debian]`` table, checked (its defaults are the host's, filled in later)."""
    default_lock = spec.base_dir / (Path(spec.where).name + ".lock")
    if sub is None:
        return DebianTable(lock=default_lock)
    suite = sub.get_str("suite")
    if suite is not None and not _SUITE.fullmatch(suite):
        raise SpecError(f"{sub.where}: suite = {suite!r} is not a suite name", "fix it")
    mirror = sub.get_str("mirror")
    if mirror is not None and not mirror.startswith(("http://", "https://", "file:///")):
        raise SpecError(
            f"{sub.where}: mirror = {mirror!r} is not an http(s) or file URL",
            "write the archive's root, as in apt's sources (\"http://HOST/debian\")",
        )

    def component(value: Any, where: str) -> str:
        if not isinstance(value, str) or not _SUITE.fullmatch(value):
            raise SpecError(f"{sub.where}: {where} = {value!r} is not a component", "fix it")
        return value

    components = tuple(sub.get_list("components", component)) or ("main",)
    keyring = sub.get_path("keyring")
    table = DebianTable(
        lock=sub.get_path("lock") or default_lock,
        suite=suite,
        mirror=mirror,
        components=components,
        keyring=keyring,
        recommends=sub.get_bool("recommends"),
        essential=sub.get_bool("essential"),
        configure=sub.get_bool("configure"),
        check_valid_until=sub.get_bool("checkValidUntil", True),
    )
    sub.finish()
    return table


def check(table: DebianTable, function: str, architecture: str, where: str) -> None:
    """``configure = true`` runs maintainer scripts in the build VM, which runs the
    host's architecture only."""
    from vmbuild.oci.image import host_goarch

    host = host_goarch()
    if table.configure and architecture != host:
        raise SpecError(
            f"{where}: [debian] configure = true needs the build VM to run {architecture} "
            f"programs, but it runs {host} only",
            "leave configure out (packages are unpacked, not configured) or build for " + host,
        )
    if table.configure and function != "buildImage":
        raise SpecError(
            f"{where}: [debian] configure = true (maintainer scripts in the build VM) is "
            f"buildImage's; {function} has no build VM",
            "build with buildImage, or leave configure out (packages are unpacked with a "
            "dpkg database, their scripts not run; add users with fakeNss)",
        )


def _settings(table: DebianTable, goarch: str, essential: bool) -> Settings:
    from vmbuild.debian.packages import settings

    return settings(
        goarch=goarch,
        lock=table.lock,
        suite=table.suite,
        mirror=table.mirror,
        components=table.components,
        keyring=table.keyring,
        recommends=table.recommends,
        essential=essential,
        check_valid_until=table.check_valid_until,
    )


def _requests(items: Sequence[Item]) -> list[Request]:
    return list(dict.fromkeys(i for i in items if isinstance(i, Request)))


def content(
    items: Sequence[Item], table: DebianTable, architecture: str, workdir: Path, remote: bool
) -> Packages:
    from vmbuild.debian.remotelayers import DebLayers

    layers = DebLayers(workdir, remote)
    # with configure = true dpkg configures them: it and the Essential set come in
    requests = _requests(items) + ([Request("dpkg")] if table.configure else [])
    essential = table.essential or table.configure
    debs = layers.content(_settings(table, architecture, essential), requests, table.configure)
    return Packages(debs, layers, table)


def lock(items: Sequence[Item], table: DebianTable, architecture: str) -> str:
    """``vmbuild lock``: the packages resolved again, the lock file written."""
    from vmbuild.debian.packages import current_lock
    from vmbuild.oci.output import resolve_out

    resolve_out(table.lock, directory=False, option="lock file")  # before resolving
    s = _settings(table, architecture, table.essential)
    return f"{table.lock}: {len(current_lock(s, _requests(items), relock=True).packages)} packages"


class Packages:
    """A spec's packages in a build (:class:`vmbuild.sources.Content`)."""

    def __init__(self, debs: DebContent, layers: DebLayers, table: DebianTable):
        self.debs, self.deb_layers, self.table = debs, layers, table

    def add_units(self, graph: Graph) -> None:
        self.debs.add_units(graph)

    def add_to_tree(self, tree: Tree) -> None:
        self.debs.add_to_tree(tree)

    def provides(self, path: str) -> bool:
        return self.debs.provides(path)

    def layers(self, groups: list[list[Unit]], mtime: int, owner: Owner) -> dict[int, LazyLayer]:
        return self.deb_layers.layers(groups, mtime, owner)

    def note(self, record: Record) -> list[Component]:
        """Each package: name, version, architecture, the .deb's SHA256, files, the
        license its copyright file states, references to its dependencies' units."""
        from vmbuild.sbom.dpkg import license_of
        from vmbuild.sbom.inventory import deb_component, files_of, read_entry
        from vmbuild.sbom.layerfiles import MAX_COPYRIGHT

        record.add_debs(self.table.lock)
        out = []
        for pkg in self.debs.lock.packages:
            mine = self.debs.packages.get(pkg.name, {})
            copyright_entry = mine.get(f"usr/share/doc/{pkg.name}/copyright")
            text = None
            if copyright_entry is not None:
                st = copyright_entry.stat()
                if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_COPYRIGHT:
                    text = read_entry(copyright_entry)
            c = deb_component(
                pkg.name,
                pkg.version,
                pkg.architecture or None,
                sha256=pkg.sha256,
                license=license_of(text),
                depends=[f"deb:{d}" for d in pkg.depends] + ["deb:usr-merge"],
                ref=f"deb:{pkg.name}",
            )
            c.files = files_of(mine)
            c.description = pkg.filename
            out.append(c)
        return out

    def guest(self) -> GuestStep | None:
        if not self.table.configure:
            return None
        from vmbuild.debian.build import configure_script

        files = tuple(self.debs.guest_debs[n] for b in self.debs.guest for n in b)
        return GuestStep(configure_script(self.debs), files)
