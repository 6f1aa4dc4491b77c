"""`vmbuild lock SPEC`: resolve the spec's packages (each content source's,
:mod:`vmbuild.sources`) and write its lock file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vmbuild.cli.common import add_command
from vmbuild.config import load_spec
from vmbuild.errors import SpecError
from vmbuild.oci.output import resolve_out
from vmbuild.sources import source, used


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "lock",
        help="pin a spec's Debian packages in its lock file",
        examples=[
            "vmbuild lock image.toml",
            "vmbuild lock image.toml && vmbuild build image.toml --locked",
        ],
    )
    p.add_argument("spec", type=Path, help="the spec file (TOML)")
    p.set_defaults(func=cmd_lock)


def cmd_lock(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec).spec
    tables: dict[str, Any] = getattr(spec, "tables", {})
    for key, table in tables.items():  # a lock that cannot be written fails before resolving
        path = source(key).lock_file(table)
        if path is not None:
            resolve_out(path, directory=False, option="lock file")
    items = getattr(spec, "contents", None) or getattr(spec, "copy_to_root", ()) or ()
    found = used(items, tables)
    if not found:
        raise SpecError(f"{args.spec} names no Debian packages", 'add { deb = "NAME" } items')
    for src, mine, table in found:
        print(src.lock(mine, table, getattr(spec, "architecture", "")))
    return 0
