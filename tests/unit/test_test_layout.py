"""The suite's own shape: every test directory is a package, and shared code lives in
tests/support, so no module under tests/ imports a test module or a conftest."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.cli import REPO

TESTS = REPO / "tests"


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module PATH imports, relative imports resolved; ``from M import N`` counts
    both M and M.N, since N may be a module."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_test_module_or_conftest(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and (parts[-1] == "conftest" or parts[-1].startswith("test_"))


def test_no_module_imports_a_test_module_or_conftest() -> None:
    bad = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in python_files()
        for name in sorted(imported_modules(path))
        if is_test_module_or_conftest(name)
    ]
    assert not bad, "shared code belongs in tests/support:\n" + "\n".join(bad)


def test_every_test_directory_is_a_package() -> None:
    dirs = {path.parent for path in python_files()}
    missing = sorted(str(d.relative_to(REPO)) for d in dirs if not (d / "__init__.py").is_file())
    assert not missing, f"add __init__.py to: {missing}"


def test_the_checks_see_the_suite() -> None:
    """The walk finds this module and reads relative and absolute imports alike."""
    here = Path(__file__).resolve()
    assert here in python_files()
    assert module_name(here) == "tests.unit.test_test_layout"
    assert "tests.support.cli.REPO" in imported_modules(here)
