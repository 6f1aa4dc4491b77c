"""Each module-level name means one thing across the package (issue 11's collisions)."""

from __future__ import annotations

import ast
from pathlib import Path

import vmbuild

PACKAGE = Path(vmbuild.__file__).parent
WATCHED = ("TAR_BLOCK", "BLOCK", "BLOCK_SIZE", "Plan", "Closure", "ClosureItem", "ClosureOf")


def definitions(name: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            defined = [t.id for t in targets if isinstance(t, ast.Name)]
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                defined = [node.name]
            if name in defined:
                found.append(str(path.relative_to(PACKAGE)))
    return found


def test_each_watched_name_is_defined_at_most_once() -> None:
    for name in WATCHED:
        assert len(definitions(name)) <= 1, (name, definitions(name))


def test_the_old_ambiguous_names_are_gone() -> None:
    for name in ("BLOCK", "BLOCK_SIZE", "Plan", "Closure"):
        assert definitions(name) == [], name
