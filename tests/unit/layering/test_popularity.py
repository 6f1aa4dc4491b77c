"""Popularity order and layer grouping on synthetic unit graphs."""

from __future__ import annotations

import pytest

from vmbuild.layering.popularity import by_popularity, choose_layers, popularity

# app -> libfoo -> libc ; app -> libc ; tool -> libc ; tool -> libbar
GRAPH: dict[str, set[str]] = {
    "app": {"libfoo", "libc"},
    "libfoo": {"libc"},
    "tool": {"libc", "libbar"},
    "libbar": set(),
    "libc": set(),
}


def test_popularity_counts_every_unit_that_reaches() -> None:
    assert popularity(GRAPH) == {"libc": 4, "libfoo": 2, "libbar": 2, "app": 1, "tool": 1}


def test_order_is_most_popular_first_ties_by_name() -> None:
    assert by_popularity(GRAPH) == ["libc", "libbar", "libfoo", "app", "tool"]


def test_references_to_unlisted_units_count_as_nodes() -> None:
    assert by_popularity({"a": {"z"}}) == ["z", "a"]


def test_cycles_terminate() -> None:
    assert popularity({"a": {"b"}, "b": {"a"}}) == {"a": 2, "b": 2}


def test_everything_fits() -> None:
    sizes = dict.fromkeys(GRAPH, 1000)
    layering = choose_layers(GRAPH, sizes, slots=10)
    assert layering.own == ("libc", "libbar", "libfoo", "app", "tool")
    assert layering.shared == ()
    assert layering.layer_count == 5


def test_exactly_enough_slots_needs_no_shared_layer() -> None:
    layering = choose_layers(GRAPH, dict.fromkeys(GRAPH, 1000), slots=5)
    assert layering.layer_count == 5 and layering.shared == ()


def test_too_few_slots_leaves_the_least_popular_to_share_one_layer() -> None:
    layering = choose_layers(GRAPH, dict.fromkeys(GRAPH, 1000), slots=3)
    assert layering.own == ("libc", "libbar")
    assert layering.shared == ("libfoo", "app", "tool")
    assert layering.layer_count == 3


def test_one_slot_shares_everything() -> None:
    layering = choose_layers(GRAPH, dict.fromkeys(GRAPH, 1000), slots=1)
    assert layering.own == () and len(layering.shared) == 5


def test_small_units_are_grouped_not_given_layers() -> None:
    sizes = {"libc": 2_000_000, "libbar": 10, "libfoo": 500_000, "app": 20, "tool": 90_000}
    layering = choose_layers(GRAPH, sizes, slots=10, min_size=64 * 1024)
    assert layering.own == ("libc", "libfoo", "tool")
    assert layering.shared == ("libbar", "app")


def test_small_units_and_overflow_share_the_same_layer() -> None:
    sizes = {"libc": 2_000_000, "libbar": 10, "libfoo": 500_000, "app": 20, "tool": 90_000}
    layering = choose_layers(GRAPH, sizes, slots=2, min_size=64 * 1024)
    assert layering.own == ("libc",)
    assert layering.shared == ("libbar", "libfoo", "app", "tool")


def test_order_does_not_depend_on_dict_order() -> None:
    reversed_graph = dict(reversed(list(GRAPH.items())))
    assert by_popularity(reversed_graph) == by_popularity(GRAPH)


def test_empty_graph_and_no_slots() -> None:
    assert choose_layers({}, {}, slots=0).layer_count == 0
    with pytest.raises(ValueError):
        choose_layers(GRAPH, {}, slots=0)
