"""Validation shared by every function's spec: typed field access, paths, dates, config.

A :class:`Fields` wraps one spec table. Each ``get_*`` removes a key and checks its
type; :meth:`Fields.finish` then rejects whatever is left, naming the unknown key.
Errors are :class:`SpecError` with the key's name, what was expected and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression
from vmbuild.oci.names import check_name, check_tag
from vmbuild.sources import SOURCES, Item, source

T = TypeVar("T")

EPOCH_DEFAULT = "1970-01-01T00:00:01Z"

# Arguments nixpkgs takes that mean nothing without a Nix store: accepted, with a warning.
NIX_ONLY = {
    "meta": "it is Nix package metadata; there is no Nix store here",
    "passthru": "it passes attributes to Nix expressions; there is no Nix store here",
    "includeNixDB": "there is no Nix store here, so no Nix database to include",
    "layeringPipeline": "layers are cut by the manual's popularity rule (maxLayers)",
    "debug": "use vmbuild --debug to see every command run",
}

# what a string argument looks like, for the hint when another type was given
STRING_EXAMPLES = {"created": "2024-01-01T00:00:00Z", "mtime": "2024-01-01T00:00:00Z"}

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def describe_toml(value: Any) -> str:
    """A spec value as TOML would show it (a short one) and its TOML type, for messages:
    ``an integer 5``, ``a table``, never a Python repr."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true or false)"
    if isinstance(value, dt.date | dt.time):
        return f"a TOML date {_iso(value)}"
    if isinstance(value, dict):
        return (
            "a table { " + ", ".join(sorted(value)[:3]) + (", ..." if len(value) > 3 else "") + " }"
        )
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, int):
        return f"an integer {value}"
    if isinstance(value, float):
        return f"a number {value}"
    if isinstance(value, str):
        return "a string " + json.dumps(value[:60])
    return type(value).__name__


# What a copyToRoot/contents item may be, for hints on one that is none of them.
ITEM_KINDS = (
    "items are host paths (copied from this machine), helpers (binSh, usrBinEnv, "
    "caCertificates, fakeNss) or, in layered contents, closures"
)


def missing_item_hint(value: str, helpers: Sequence[str], closures: bool) -> str:
    """The hint for a copyToRoot/contents item that names no existing path: the helper
    it is close to, or what items are when it looks like a Nix package."""
    import difflib  # only for a name that is not known

    close = difflib.get_close_matches(value, helpers, n=1, cutoff=0.6) or [
        h for h in helpers if h.lower() == value.lower()
    ]
    if close:
        return f'did you mean the helper "{close[0]}"?'
    example = '{ path = "/usr/bin/redis-server", closure = true }'
    if value.startswith(("pkgs.", "nixpkgs.", "<nixpkgs>")) or (
        "/" not in value and "." in value and not Path(value).suffix[1:].isalpha()
    ):
        return f"{value} looks like a Nix package; there is no Nix store here: {ITEM_KINDS}, " + (
            f"e.g. {example}" if closures else 'e.g. "./root" or "binSh"'
        )
    if "/" not in value:
        return f"{ITEM_KINDS}; a relative path resolves against the spec file's directory"
    return "fix the path (relative paths resolve against the spec file's directory)"


class Fields:
    """One spec table being validated; ``where`` names it in messages (e.g. the file)."""

    def __init__(self, table: dict[str, Any], where: str, base_dir: Path):
        self._table = dict(table)
        self.where = where
        self.base_dir = base_dir
        self.given: dict[str, Any] = dict(table)
        self._known: set[str] = set()  # every argument asked for: the function's names

    def peek(self, key: str) -> Any:
        """The raw value of ``key`` (None when absent), leaving it to be taken."""
        return self._table.get(key)

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self._table

    def _take(self, key: str, kind: type[T], default: T | None) -> T | None:
        self._known.add(key)
        if key not in self._table:
            return default
        value = self._table.pop(key)
        if kind is str and isinstance(value, dt.date | dt.time):
            raise SpecError(
                f"{self.where}: {key} must be a string, got a TOML date",
                f'write it as a string: {key} = "{_iso(value)}"',
            )
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise SpecError(
                f"{self.where}: {key} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                f"got {describe_toml(value)}",
                f'write it as a string: {key} = "{STRING_EXAMPLES.get(key, "...")}"'
                if kind is str
                else f"fix {key} in the spec",
            )
        return value

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return self._take(key, str, default)

    def required_str(self, key: str) -> str:
        value = self.get_str(key)
        if not value:
            raise SpecError(f"{self.where}: {key} is required", f'add {key} = "..." to the spec')
        return value

    def get_script(self, key: str, default: str = "") -> str:
        """A shell script: a string without NUL bytes (no shell can take one)."""
        value = self.get_str(key, default) or ""
        if "\0" in value:
            line = value[: value.index("\0")].count("\n") + 1
            raise SpecError(
                f"{self.where}: {key} holds a NUL byte (line {line})",
                "remove it; a script cannot contain NUL (write printf '\\0' to produce one)",
            )
        return value

    def get_int(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._take(key, int, default)
        if value is not None and (
            (minimum is not None and value < minimum) or (maximum is not None and value > maximum)
        ):
            bounds = f"{minimum if minimum is not None else '-inf'}..{maximum or 'inf'}"
            raise SpecError(f"{self.where}: {key} = {value} is out of range", f"use {bounds}")
        return value

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self._take(key, bool, default)
        assert value is not None
        return value

    def get_table(self, key: str) -> dict[str, Any] | None:
        return self._take(key, dict, None)

    def get_list(self, key: str, item: Callable[[Any, str], T]) -> list[T]:
        """A list (or a single value, as the manual allows) with each item checked."""
        self._known.add(key)
        if key not in self._table:
            return []
        value = self._table.pop(key)
        items = value if isinstance(value, list) else [value]
        return [item(v, f"{key}[{i}]") for i, v in enumerate(items)]

    def get_date(self, key: str) -> str:
        """A date argument (``created``, ``mtime``): ISO-8601 or "now", as RFC 3339 UTC."""
        return parse_created(self.get_str(key, EPOCH_DEFAULT) or EPOCH_DEFAULT, self.where, key)

    def get_image_file(self, key: str = "fromImage") -> Path | None:
        """A base image archive's path; one that does not exist is an error here."""
        value = self.get_str(key)
        if value is None:
            return None
        path = self.resolve(value)
        if path.exists():
            return path
        looks_like_ref = ":" in value and not value.startswith(("/", ".", "~"))
        raise SpecError(
            f"{self.where}: {key} {path} does not exist",
            f"{key} is an image archive (docker save, skopeo copy); to use {value!r} from a "
            "registry, pull it first: vmbuild prefetch, then a pullImage spec"
            if looks_like_ref
            else "fix the path (relative paths resolve against the spec file's directory)",
        )

    def get_path(self, key: str) -> Path | None:
        value = self.get_str(key)
        return self.resolve(value) if value is not None else None

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def finish(self) -> None:
        """Warn about the Nix-only arguments; reject any other argument left over."""
        for key in sorted(self._table.keys() & NIX_ONLY.keys()):
            del self._table[key]
            warnings.warn(f"{self.where}: {key} is ignored: {NIX_ONLY[key]}", UserWarning, 2)
        if self._table:
            key = sorted(self._table)[0]
            import difflib

            close = difflib.get_close_matches(key, sorted(self._known), n=1, cutoff=0.6)
            if not close:
                close = [k for k in sorted(self._known) if k.lower() == key.lower()]
            raise SpecError(
                f"{self.where}: unknown argument {key!r}",
                f"did you mean {close[0]}?"
                if close
                else "check the spelling against the manual's argument names",
            )


# nixpkgs' names for the `compressor` argument -> vmbuild's compressions
COMPRESSORS: dict[str, Compression] = {"none": "none", "gz": "gzip", "zstd": "zstd"}


def get_compressor(fields: Fields) -> Compression | None:
    """The ``compressor`` argument (nixpkgs' names), or None when not given."""
    value = fields.get_str("compressor")
    if value is None:
        return None
    if value not in COMPRESSORS:
        raise SpecError(
            f"{fields.where}: compressor = {value!r} is not one vmbuild has",
            "use " + ", ".join(f'"{c}"' for c in COMPRESSORS) + " (as nixpkgs names them)",
        )
    return COMPRESSORS[value]


def parse_created(
    value: str, where: str, key: str = "created", now: Callable[[], dt.datetime] | None = None
) -> str:
    """ISO-8601 or "now" -> RFC 3339 UTC (``YYYY-MM-DDTHH:MM:SSZ``, fractions kept)."""
    if value == "now":
        moment = (now or (lambda: dt.datetime.now(dt.UTC)))()
    else:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise SpecError(
                f"{where}: {key} = {value!r} is not an ISO-8601 date",
                'use e.g. "2024-05-01T12:00:00Z" or "now"',
            ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        moment = moment.astimezone(dt.UTC)
        moment.timestamp()
    except (OverflowError, ValueError, OSError) as exc:
        raise SpecError(
            f"{where}: {key} = {value!r} is out of range",
            "use a date between 0001-01-02 and 9999-12-30",
        ) from exc
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _iso(value: dt.date | dt.time) -> str:
    text = value.isoformat()
    return text.replace("+00:00", "Z") if isinstance(value, dt.datetime) else text


def created_epoch(created: str) -> int:
    """Whole seconds since the epoch of an RFC 3339 string made by :func:`parse_created`."""
    return int(dt.datetime.fromisoformat(created).timestamp())


def name_and_tag(fields: Fields) -> tuple[str, str | None]:
    """The required ``name`` (lower-cased, as nixpkgs does) and optional ``tag``, checked."""
    name = check_name(fields.required_str("name").lower(), fields.where)
    tag = fields.get_str("tag")
    if tag is not None:
        check_tag(tag, f"{fields.where}: tag")
    return name, tag


def source_tables(fields: Fields, items: Iterable[object]) -> dict[str, Any]:
    """The table of each content source (:mod:`vmbuild.sources`) the spec has items or a
    table of, by its items' key."""
    used = {item.source for item in items if isinstance(item, Item)}
    tables = {}
    for key, (name, _) in SOURCES.items():
        raw = fields.get_table(name)
        if raw is not None or key in used:
            sub = None if raw is None else Fields(raw, f"{fields.where}: [{name}]", fields.base_dir)
            tables[key] = source(key).parse_table(fields, sub)
    return tables


def check_sources(tables: dict[str, Any], function: str, architecture: str, where: str) -> None:
    for key, table in tables.items():
        source(key).check(table, function, architecture, where)
