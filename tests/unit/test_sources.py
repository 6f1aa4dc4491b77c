"""The content-source seam (vmbuild/sources.py): the table, the dispatch of spec items,
and the Debian source conforming to the protocol (mypy checks the assignment below)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.imports import loaded_of
from vmbuild import sources
from vmbuild.debian import source as debian_source
from vmbuild.debian.lock import Request
from vmbuild.errors import SpecError

DEBIAN: sources.Source = debian_source  # the module is the source


def test_each_key_names_a_module_that_is_a_source() -> None:
    for key in sources.SOURCES:
        assert callable(sources.source(key).parse_item)
    assert sources.source("deb") is DEBIAN


def test_an_item_goes_to_the_source_of_its_key() -> None:
    assert sources.parse_item({"deb": "bash"}, "x") == Request("bash")
    assert sources.parse_item({"path": "/bin/sh"}, "x") is None
    assert sources.parse_item("binSh", "x") is None
    with pytest.raises(SpecError, match="not a Debian package name"):
        sources.parse_item({"deb": "Bad"}, "x")


def test_one_name_rule_for_the_item_and_the_lock() -> None:
    """A one-letter name is a package name for the lock, so for a spec too."""
    assert sources.parse_item({"deb": "r"}, "x") == Request("r")


def test_items_are_grouped_by_source_in_the_spec_order(tmp_path: Path) -> None:
    items = [Request("b"), Path("/x"), Request("a")]
    ((src, mine, table),) = sources.used(items, {"deb": "T"})
    assert src is DEBIAN and mine == [Request("b"), Request("a")] and table == "T"
    assert sources.used([Path("/x")]) == []


def test_a_spec_without_packages_loads_no_source() -> None:
    code = (
        "from pathlib import Path\n"
        "from vmbuild.config import layered\n"
        "from vmbuild.config.common import Fields\n"
        "layered.parse(Fields({'name': 'x'}, '/s/x.toml', Path('/s')))\n"
    )
    assert loaded_of(code, ("vmbuild.debian",)) == []


def test_nothing_outside_a_source_imports_it() -> None:
    """Builders, specs, the CLI, the VM and the SBOM reach the Debian source only
    through vmbuild.sources (its SOURCES line)."""
    package = Path(sources.__file__).parent
    names = ("vmbuild.debian",)
    bad = []
    for path in sorted(package.rglob("*.py")):
        if path.is_relative_to(package / "debian"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                found = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            bad += [f"{path.name}: {m}" for m in found if m.startswith(names)]
    assert bad == []
