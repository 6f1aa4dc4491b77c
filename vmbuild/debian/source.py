"""Debian packages as a content source (:mod:`vmbuild.sources`): the spec's items and
``[debian]`` table (:mod:`vmbuild.debian.spec`), the lock, and what a build makes of
them (:mod:`vmbuild.debian.build`, through the remote caches by
:mod:`vmbuild.debian.remotelayers`). Light to import: the rest loads when a build
uses a package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild.debian import spec
from vmbuild.debian.lock import Request
from vmbuild.debian.spec import DebianTable
from vmbuild.sources import GuestStep, Item, SpecFields

if TYPE_CHECKING:
    from vmbuild.debian.build import DebContent
    from vmbuild.debian.remotelayers import DebLayers
    from vmbuild.oci.layer import Owner
    from vmbuild.oci.tree import Tree
    from vmbuild.sbom.attest import Record
    from vmbuild.sbom.inventory import Component
    from vmbuild.streaming.lazy import LazyLayer
    from vmbuild.units.graph import Graph, Unit


class Debian:
    """The Debian source (:class:`vmbuild.sources.Source`)."""

    # stdenv's base tools as Debian packages, for shell images whose inputs are packages
    toolset = tuple(
        Request(name)
        for name in (
            *("bash", "coreutils", "tar", "gzip", "sed", "grep", "findutils", "diffutils"),
            *("patch", "bzip2", "xz-utils", "mawk"),
        )
    )

    def parse_item(self, value: Any, place: str) -> Request | None:
        return spec.parse_item(value, place)

    def parse_table(self, fields: SpecFields, table: SpecFields | None) -> DebianTable:
        return spec.parse_table(fields, table)

    def check(self, table: DebianTable, function: str, architecture: str, where: str) -> None:
        spec.check(table, function, architecture, where)

    def content(
        self,
        items: Sequence[Item],
        table: DebianTable,
        architecture: str,
        workdir: Path,
        remote: bool,
    ) -> Packages:
        from vmbuild.debian.remotelayers import DebLayers

        layers = DebLayers(workdir, remote)
        debs = layers.content(_requests(items), table, architecture)
        return Packages(debs, layers, table)

    def lock(self, items: Sequence[Item], table: DebianTable, architecture: str) -> str:
        from vmbuild.debian.build import lock_requests

        lock = lock_requests(_requests(items), table, architecture)
        return f"{table.lock}: {len(lock.packages)} packages"

    def lock_file(self, table: DebianTable) -> Path:
        return table.lock

    def describe(self, item: Item) -> str:
        assert isinstance(item, Request)
        return item.name + (f"={item.version}" if item.version else "")


def _requests(items: Sequence[Item]) -> list[Request]:
    return list(dict.fromkeys(i for i in items if isinstance(i, Request)))


class Packages:
    """A spec's packages in a build (:class:`vmbuild.sources.Content`)."""

    def __init__(self, debs: DebContent, layers: DebLayers, table: DebianTable):
        self.debs, self.deb_layers, self.table = debs, layers, table

    def add_units(self, graph: Graph) -> None:
        from vmbuild.debian.build import add_units

        add_units(graph, self.debs)

    def add_to_tree(self, tree: Tree) -> None:
        from vmbuild.debian.build import add_to_tree

        add_to_tree(tree, self.debs)

    def provides(self, path: str) -> bool:
        return self.debs.provides(path)

    def layers(self, groups: list[list[Unit]], mtime: int, owner: Owner) -> dict[int, LazyLayer]:
        return self.deb_layers.layers(groups, mtime, owner)

    def note(self, record: Record) -> list[Component]:
        from vmbuild.sbom import collect

        record.add_debs(self.table.lock)
        return collect.deb_packages(self.debs.lock.packages, self.debs.packages)

    def guest(self) -> GuestStep | None:
        if not self.table.configure:
            return None
        from vmbuild.debian.build import configure_script

        debs = self.debs
        files = tuple(debs.guest_debs[n] for b in debs.guest for n in b)
        return GuestStep(configure_script(debs), files)


SOURCE = Debian()
