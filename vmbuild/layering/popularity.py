"""Which units get a layer of their own: popularity over the reference graph.

A unit's popularity is the number of units (itself included) from which it can be
reached by following references: the C library, needed by everything, is the most
popular. Units are ordered by popularity, most popular first, ties by name. The first
units in that order get one layer each; everything else shares one layer. Beyond the
manual, a unit smaller than ``min_size`` bytes never gets its own layer (a layer per
tiny symlink would waste the layer budget); it goes to the shared layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def reachable(start: str, refs: Mapping[str, Iterable[str]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for ref in refs.get(todo.pop(), ()):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return seen


def popularity(refs: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """unit -> how many units reach it (itself included). Unknown references are nodes too."""
    nodes = set(refs) | {r for targets in refs.values() for r in targets}
    counts = dict.fromkeys(nodes, 0)
    for node in nodes:
        for hit in reachable(node, refs):
            counts[hit] += 1
    return counts


def by_popularity(refs: Mapping[str, Iterable[str]]) -> list[str]:
    """Every unit, most popular first, ties broken by name."""
    counts = popularity(refs)
    return sorted(counts, key=lambda name: (-counts[name], name))


@dataclass(frozen=True)
class Layering:
    """``own``: units with a layer each, in layer order; ``shared``: the one shared layer."""

    own: tuple[str, ...]
    shared: tuple[str, ...]

    @property
    def layer_count(self) -> int:
        return len(self.own) + (1 if self.shared else 0)


def choose_layers(
    refs: Mapping[str, Iterable[str]],
    sizes: Mapping[str, int],
    slots: int,
    min_size: int = 0,
) -> Layering:
    """Cut the units of ``refs`` into at most ``slots`` layers."""
    order = by_popularity(refs)
    if not order:
        return Layering((), ())
    if slots < 1:
        raise ValueError("no layer left for the content units")
    big = [u for u in order if sizes.get(u, 0) >= min_size]
    small = [u for u in order if sizes.get(u, 0) < min_size]
    if len(big) + (1 if small else 0) <= slots:
        return Layering(tuple(big), tuple(small))
    cut = slots - 1
    rest = set(big[cut:]) | set(small)
    return Layering(tuple(big[:cut]), tuple(u for u in order if u in rest))
