"""buildNixShellImage / streamNixShellImage specs: the manual's arguments and the recipe.

vmbuild has no Nix derivations; ``drv`` is a build recipe, a table whose every key
becomes an environment variable of the image, as a derivation's attributes do:
strings as they are, integers in decimal, lists joined with spaces, true as "1" and
false as "". Keys with a meaning of their own:

- ``name`` (default ``<pname>-<version>``, or ``pname``) names the recipe (and the image,
  ``<name>-env``, and the outputs' directories);
- ``src``: a tarball or a directory (relative to the spec file); in the image at
  ``/nix-shell/src/<its name>``, which ``$src`` names;
- ``nativeBuildInputs``, ``buildInputs`` (and the propagated and check variants):
  content items as ``contents`` takes them; their programs' directories go on PATH;
- ``outputs`` (default ``["out"]``): each becomes a variable naming a directory under
  ``/nix/store`` (derived from the recipe's hash) that the build user may write;
- ``passAsFile``: keys whose values go in files, named by ``<key>Path`` instead.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.config.arch import parse_architecture
from vmbuild.config.common import EPOCH_DEFAULT, Fields, get_compressor, source_tables
from vmbuild.config.layered import (
    MAX_LAYERS_DEFAULT,
    MAX_LAYERS_LIMIT,
    ContentItem,
    check_elf,
    content_item,
)
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression
from vmbuild.oci.names import check_name, check_tag
from vmbuild.sources import Item, used

DEFAULT_SHELL = Path("/usr/bin/bash")
INPUT_KEYS = (
    "nativeBuildInputs",
    "buildInputs",
    "propagatedNativeBuildInputs",
    "propagatedBuildInputs",
    "nativeCheckInputs",
    "checkInputs",
)
_OUTPUT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DRV_NAME = re.compile(r"[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*\Z")  # as Nix's store names


@dataclass(frozen=True)
class Recipe:
    """The ``drv`` table: its variables (as given, minus src/inputs/outputs/passAsFile)."""

    name: str
    variables: tuple[tuple[str, str], ...]
    src: Path | None = None
    inputs: tuple[tuple[str, tuple[ContentItem, ...]], ...] = ()  # (key, its items)
    outputs: tuple[str, ...] = ("out",)
    pass_as_file: tuple[str, ...] = ()


@dataclass(frozen=True)
class NixShellSpec:
    function: str
    name: str
    drv: Recipe
    tag: str | None = None
    uid: int = 1000
    gid: int = 1000
    home: str = "/build"
    shell: Path = DEFAULT_SHELL
    shell_given: bool = False  # else bash comes from where the inputs come from
    command: str | None = None
    run: str | None = None
    created: str = EPOCH_DEFAULT
    architecture: str = ""  # the host's: the image holds host or host-architecture files
    max_layers: int = MAX_LAYERS_DEFAULT  # vmbuild's: streamLayeredImage's, passed on
    compressor: Compression | None = None
    tables: dict[str, Any] = field(default_factory=dict)  # each content source's table
    build_args: dict[str, Any] | None = None

    @property
    def streaming(self) -> bool:
        return self.function == "streamNixShellImage"

    @property
    def inputs(self) -> tuple[ContentItem, ...]:
        return tuple(i for _, items in self.drv.inputs for i in items)

    @property
    def from_packages(self) -> bool:
        """Whether the recipe's inputs are a content source's packages (Debian's): then
        so are its base tools."""
        return any(isinstance(i, Item) for i in self.inputs)

    @property
    def contents(self) -> tuple[ContentItem, ...]:
        """The inputs, after the base tools of the sources they come from (what ``vmbuild
        lock`` resolves)."""
        return (*(t for src, _, _ in used(self.inputs) for t in src.toolset), *self.inputs)


def env_value(value: Any, where: str) -> str:
    """A derivation attribute as Nix puts it in the builder's environment."""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if "\0" in value:
            raise SpecError(f"{where} holds a NUL byte", "an environment variable cannot")
        return value
    if isinstance(value, list):
        return " ".join(env_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise SpecError(
        f"{where} is a {type(value).__name__}, which cannot be an environment variable",
        "give a string, a number, true/false or a list of them",
    )


def _src(fields: Fields, value: Any) -> Path:
    where = f"{fields.where}: src"
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} must be a path string", 'write src = "./hello-2.12.tar.gz"')
    path = fields.resolve(value)
    if path.is_dir():
        return path
    if not path.exists():
        raise SpecError(
            f"{where}: {path} does not exist",
            "fix the path (relative paths resolve against the spec file's directory)",
        )
    try:
        is_tar = path.is_file() and tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        is_tar = False
    if not is_tar:
        raise SpecError(
            f"{where}: {path} is neither a tarball nor a directory",
            "give a .tar, .tar.gz, .tar.bz2 or .tar.xz file, or a source directory",
        )
    return path


def _strings(value: Any, where: str, check: re.Pattern[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{where} must be a list of names", f'write {where.split()[-1]} = ["out"]')
    for v in value:
        if check is not None and not check.match(v):
            raise SpecError(f"{where}: {v!r} is not a variable name", "use letters, digits, _")
    return tuple(value)


def _drv_name(table: dict[str, Any], where: str) -> str:
    name, pname, version = table.get("name"), table.get("pname"), table.get("version")
    if name is None and isinstance(pname, str):
        name = f"{pname}-{version}" if isinstance(version, str) and version else pname
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where} needs a name", 'add name = "hello-2.12" or pname and version')
    if not _DRV_NAME.match(name):
        raise SpecError(
            f"{where}: name {name!r} is not a store name",
            "use letters, digits and + - . _ ? = (not starting with a dot)",
        )
    return name


def parse_recipe(fields: Fields) -> Recipe:
    table = fields.get_table("drv")
    where = f"{fields.where}: drv"
    if table is None:
        raise SpecError(
            f"{fields.where}: drv is required and must be a table",
            'add [drv] with pname = "...", version = "...", src = "..."',
        )
    name = _drv_name(table, where)
    sub = Fields(table, where, fields.base_dir)
    src = _src(sub, table["src"]) if "src" in table else None
    inputs = tuple(
        (key, tuple(sub.get_list(key, content_item(sub)))) for key in INPUT_KEYS if key in table
    )
    outputs = _strings(table.get("outputs", ["out"]), f"{where} outputs", _OUTPUT) or ("out",)
    pass_as_file = _strings(table.get("passAsFile", []), f"{where} passAsFile")
    variables: list[tuple[str, str]] = []
    for key, value in sorted(table.items()):
        if not key or "=" in key or "\0" in key:
            raise SpecError(f"{where}: key {key!r} cannot name a variable", "rename it")
        if key in ("src", *INPUT_KEYS):
            continue
        variables.append((key, env_value(value, f"{where}.{key}")))
    given = {k for k, _ in variables}
    for key, value in (("name", name), ("outputs", " ".join(outputs))):
        if key not in given:
            variables.append((key, value))
    variables.sort()
    for key in pass_as_file:
        if key not in given:
            raise SpecError(f"{where}: passAsFile names {key!r}, which drv lacks", f"add {key}")
    return Recipe(name, tuple(variables), src, inputs, outputs, pass_as_file)


def _shell(fields: Fields) -> Path:
    shell = fields.get_path("shell") or DEFAULT_SHELL
    place = f"{fields.where}: shell"
    if not shell.is_file() or not os.access(shell, os.X_OK):
        raise SpecError(
            f"{place}: {shell} is not an executable file", "give the path of a bash binary"
        )
    check_elf(shell, place)
    return shell


def _home(fields: Fields) -> str:
    home = fields.get_str("homeDirectory", "/build") or ""
    if not home.startswith("/") or "\n" in home or "\0" in home or ":" in home:
        raise SpecError(
            f"{fields.where}: homeDirectory = {home!r} is not an absolute path",
            'write e.g. homeDirectory = "/build"',
        )
    return os.path.normpath(home)


def parse(fields: Fields, function: str = "buildNixShellImage") -> NixShellSpec:
    where = fields.where
    drv = parse_recipe(fields)
    name = check_name((fields.get_str("name") or f"{drv.name}-env").lower(), where)
    tag = fields.get_str("tag")
    if tag is not None:
        check_tag(tag, where)
    command, run = fields.get_script("command") or None, fields.get_script("run") or None
    if command is not None and run is not None:
        raise SpecError(
            f"{where}: command and run are both given", "keep one (run exits with its status)"
        )
    spec = NixShellSpec(
        function=function,
        name=name,
        drv=drv,
        tag=tag,
        uid=fields.get_int("uid", 1000, minimum=0, maximum=2**32 - 2) or 0,
        gid=fields.get_int("gid", 1000, minimum=0, maximum=2**32 - 2) or 0,
        home=_home(fields),
        shell_given=fields.peek("shell") is not None,
        shell=_shell(fields),
        command=command,
        run=run,
        created=fields.get_date("created"),
        architecture=parse_architecture(None, where),
        max_layers=fields.get_int(
            "maxLayers", MAX_LAYERS_DEFAULT, minimum=2, maximum=MAX_LAYERS_LIMIT
        )
        or MAX_LAYERS_DEFAULT,
        compressor=get_compressor(fields),
        tables=source_tables(fields, [i for _, items in drv.inputs for i in items]),
        build_args=dict(fields.given),
    )
    fields.finish()
    return spec
