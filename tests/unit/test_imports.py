"""Imports point one way: no cycle between packages or modules, and nothing below the
builders reads the spec (``vmbuild.config``) or the builders themselves.

Every ``import`` counts, wherever it is written: at the top, inside a function, or
under ``if TYPE_CHECKING``. A package is ``vmbuild.X`` for each subpackage; each
top-level module (``vmbuild.errors``, ``vmbuild.run``, the API
in ``vmbuild/__init__.py`` …) is a node of its own, as they sit at both ends of the
order (errors at the bottom, the CLI at the top).
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vmbuild"

# Packages nothing below the builders may import (the spec, and the builders).
UPPER = ("vmbuild.config", "vmbuild.builders")
# Packages that sit below the builders.
LOWER = (
    "vmbuild.oci",
    "vmbuild.vm",
    "vmbuild.registry",
    "vmbuild.units",
    "vmbuild.streaming",
    "vmbuild.hoststeps",
    "vmbuild.layering",
    "vmbuild.sbom",
    "vmbuild.debian",
    "vmbuild.net",
)
# Top-level modules that sit above the builders (the command line and the API).
ABOVE = {"vmbuild", "vmbuild.__main__", "vmbuild.cli"}


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The vmbuild modules ``name`` imports, anywhere in the file.

    ``from P import x`` is an import of ``P.x`` when that is a module, else of ``P``.
    """
    modules = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


@functools.cache
def graph() -> dict[str, set[str]]:
    """Each module's vmbuild imports (parsed once per run; callers must not change it)."""
    names = module_names()
    return {name: imports_of(name, path, names) for name, path in names.items()}


def package_of(module: str) -> str:
    """``vmbuild.X`` for a module of subpackage X; a top-level module is its own node."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return module


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``edges`` as a chain ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        here = package_of(module)
        packages.setdefault(here, set()).update(
            package_of(t) for t in targets if package_of(t) != here
        )
    return packages


def witness(edges: dict[str, set[str]], src: str, dst: str) -> str:
    """A module import that makes package ``src`` depend on package ``dst``."""
    for module, targets in sorted(edges.items()):
        if package_of(module) == src:
            for t in sorted(targets):
                if package_of(t) == dst:
                    return f"{module} imports {t}"
    return f"{src} -> {dst}"


def test_the_walk_sees_imports_in_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from vmbuild.config.common import Fields\n"
        "def f():\n"
        "    from vmbuild.vm import steps\n"
        "    import vmbuild.oci.layer\n"
        "from . import sibling\n"
    )
    found = {"vmbuild.config.common", "vmbuild.vm.steps", "vmbuild.oci.layer", "vmbuild.vm.sibling"}
    assert imports_of("vmbuild.vm.m", source, {*found, "vmbuild.vm"}) == found


def test_find_cycle_gives_the_chain() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_round_a_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "module import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_between_packages() -> None:
    edges = graph()
    cycle = find_cycle(package_graph(edges)) or []
    steps = "; ".join(witness(edges, a, b) for a, b in itertools.pairwise(cycle))
    assert not cycle, f"package import cycle: {' -> '.join(cycle)} ({steps})"


def test_nothing_below_the_builders_reads_the_spec_or_the_builders() -> None:
    bad = [
        f"{module} imports {target}"
        for module, targets in sorted(graph().items())
        if package_of(module) not in (*UPPER, *ABOVE)
        for target in sorted(targets)
        if package_of(target) in UPPER
    ]
    assert not bad, "imports that point up: " + "; ".join(bad)


def test_the_lower_packages_are_there() -> None:
    packages = set(package_graph(graph()))
    assert set(LOWER) | set(UPPER) <= packages
