"""Content sources: where a spec's content units come from besides the host's files.

A source (a module: :class:`Source`) owns a kind of spec item (``{ deb = "bash" }``:
key ``deb``) and the spec's table of its settings (``[debian]``), how its items lock,
and the :class:`Content` a build makes of them: units and their references, entries,
SBOM components, what the build VM runs for them. The builders loop over a spec's
sources and name none. :data:`SOURCES` maps each item key to its table's name and its
module, loaded only when a spec has that item or table. A new package format is one
package with such a module, and one line in :data:`SOURCES`.
"""

from __future__ import annotations

import contextvars
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from vmbuild.oci.layer import Owner
    from vmbuild.oci.tree import Tree
    from vmbuild.sbom.attest import Record
    from vmbuild.sbom.inventory import Component
    from vmbuild.streaming.lazy import LazyLayer
    from vmbuild.units.graph import Graph, Unit

# an item's key -> (the spec's table of its settings, the module that is the source)
SOURCES = {"deb": ("debian", "vmbuild.debian.source")}

T = TypeVar("T")
# Set by ``vmbuild build --locked``: a lock that does not cover the spec is an error.
LOCKED_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("locked", default=False)


class Item:
    """A spec item a source owns (each source's item type derives from it)."""

    source: ClassVar[str]  # its key in SOURCES
    name: str

    def describe(self) -> str:
        """The item as a shell image's input variables say it."""
        return self.name


class SpecFields(Protocol):
    """What a source reads its table with (``vmbuild.config.common.Fields``)."""

    where: str
    base_dir: Path

    def get_str(self, key: str, default: str | None = None) -> str | None: ...
    def get_bool(self, key: str, default: bool = False) -> bool: ...
    def get_path(self, key: str) -> Path | None: ...
    def get_list(self, key: str, item: Callable[[Any, str], T]) -> list[T]: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class GuestStep:
    """What the build VM runs for a source before runAsRoot: a script (chrooted in the
    image, as root) and the files it reads (a read-only disk). A failure of one of the
    source's own scripts is a line on the script's fd 3 (``PACKAGE SCRIPT STATUS``),
    which the guest's status record carries to the host (``vmbuild.vm.steps``)."""

    script: str
    files: tuple[Path, ...]


class Content(Protocol):
    """One spec's items of one source, resolved (fetched when their bytes are used)."""

    def add_units(self, graph: Graph) -> None: ...  # its units, referencing what they need
    def add_to_tree(self, tree: Tree) -> None: ...  # all its entries in one tree (buildImage)
    def provides(self, path: str) -> bool: ...  # whether its entries hold ``path``
    # the layers of the groups holding its units, by index (from a remote cache, or
    # packed for one; the builder packs the others)
    def layers(
        self, groups: list[list[Unit]], mtime: int, owner: Owner
    ) -> dict[int, LazyLayer]: ...
    def note(self, record: Record) -> list[Component]: ...  # SBOM components; its inputs
    def guest(self) -> GuestStep | None: ...  # what the build VM runs for it


class Source(Protocol):
    """A content source: a module of these names, named in :data:`SOURCES`."""

    toolset: tuple[Item, ...]  # stdenv's base tools as its items (buildNixShellImage)

    def parse_item(self, value: Any, place: str) -> Item | None: ...  # None: not its item
    # its table (``None``: the spec has none), checked; defaults filled in later
    def parse_table(self, spec: SpecFields, table: SpecFields | None) -> Any: ...
    # what the spec's other arguments rule out (raises a SpecError)
    def check(self, table: Any, function: str, architecture: str, where: str) -> None: ...
    # ``items`` resolved and read; ``remote``: layers may come from the remote caches
    def content(
        self, items: Sequence[Item], table: Any, architecture: str, workdir: Path, remote: bool
    ) -> Content: ...
    # ``vmbuild lock``: lock ``items`` again (the lock file checked first); what it wrote
    def lock(self, items: Sequence[Item], table: Any, architecture: str) -> str: ...


def source(key: str) -> Source:
    """The source of items keyed ``key`` (its module loaded now)."""
    return cast("Source", importlib.import_module(SOURCES[key][1]))


def parse_item(value: Any, place: str) -> Item | None:
    """``value`` as a source's item (a table whose first key is a source's); else None."""
    if isinstance(value, dict):
        for key in SOURCES:
            if key in value:
                return source(key).parse_item(value, place)
    return None


def used(
    items: Iterable[object], tables: Mapping[str, Any] | None = None
) -> list[tuple[Source, list[Item], Any]]:
    """The sources ``items`` use, each with its items (in the spec's order) and its
    table in ``tables``."""
    found: dict[str, list[Item]] = {}
    for item in items:
        if isinstance(item, Item):
            found.setdefault(item.source, []).append(item)
    return [(source(k), mine, (tables or {}).get(k)) for k, mine in found.items()]


def contents(
    items: Iterable[object],
    tables: Mapping[str, Any],
    architecture: str,
    workdir: Path,
    remote: bool = False,
) -> list[Content]:
    """The content of each source ``items`` use (see :meth:`Source.content`)."""
    return [
        src.content(mine, table, architecture, workdir, remote)
        for src, mine, table in used(items, tables)
    ]
