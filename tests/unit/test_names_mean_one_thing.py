"""Each module-level name means one thing across the package (issue 11's collisions),
and bytes hashed while they pass go through the one tee in ``vmbuild.oci.sinks``."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import vmbuild

PACKAGE = Path(vmbuild.__file__).parent
# Where a class may hold a hashlib object: the tee, and BlockWriter's hashing thread.
HASHING_CLASSES = {"oci/sinks.py", "oci/blocks.py"}
WATCHED = (
    "TAR_BLOCK",
    "BLOCK",
    "BLOCK_SIZE",
    "Plan",
    "Closure",
    "ClosureItem",
    "ClosureOf",
    "RACY_NS",
    "human",
    "descriptor",
    "WHITEOUT",
    "OPAQUE",
)
# Strings that name a format's fixed thing: written once, in vmbuild/oci/layout.py.
LAYOUT_STRINGS = ("application/vnd.oci.", "application/vnd.docker.", ".wh.")


@functools.cache
def modules() -> list[tuple[str, ast.Module]]:
    """Every module of the package, parsed once."""
    return [
        (str(path.relative_to(PACKAGE)), ast.parse(path.read_text()))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


@functools.cache
def top_level() -> list[tuple[str, ast.stmt]]:
    """Every module's top-level statements."""
    return [(where, node) for where, tree in modules() for node in tree.body]


def names_defined(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.ClassDef | ast.FunctionDef):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else []
    if isinstance(node, ast.AnnAssign):
        targets = [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def definitions(name: str) -> list[str]:
    return [where for where, node in top_level() if name in names_defined(node)]


def test_each_watched_name_is_defined_at_most_once() -> None:
    for name in WATCHED:
        assert len(definitions(name)) <= 1, (name, definitions(name))


def test_the_old_ambiguous_names_are_gone() -> None:
    for name in ("BLOCK", "BLOCK_SIZE", "Plan", "Closure"):
        assert definitions(name) == [], name


def uses_hashlib(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "hashlib"
        for n in ast.walk(node)
    )


def test_no_ad_hoc_hashing_sinks() -> None:
    """A class keeping its own sha256 of what passes, or a hashlib object handed to a
    helper to update, is a second hashing tee: use HashingWriter or HashingReader."""
    found = []
    for where, tree in modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ClassDef)
                and where not in HASHING_CLASSES
                and uses_hashlib(node)
            ):
                found.append(f"{where}: class {node.name}")
            if isinstance(node, ast.arg) and node.annotation and uses_hashlib(node.annotation):
                found.append(f"{where}: argument {node.arg}")
    assert found == []


def test_layout_strings_live_in_one_module() -> None:
    """Media types and whiteout markers are vmbuild.oci.layout's constants."""
    found = [
        f"{where}: {node.value!r}"
        for where, tree in modules()
        if where != "oci/layout.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(LAYOUT_STRINGS)
    ]
    assert found == []


def test_a_file_version_is_named_by_cache_file_identity() -> None:
    """st_ino and st_ctime_ns together (a file's version) are read only by
    cache.file_identity; a second spelling would be a second, perhaps weaker, rule."""
    found = []
    for where, tree in modules():
        if where == "cache.py":
            continue
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        if {"st_ino", "st_mtime_ns"} <= attrs:
            found.append(where)
    assert found == [], found
