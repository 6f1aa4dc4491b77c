"""`vmbuild lock SPEC`: resolve the spec's packages (each content source's,
:mod:`vmbuild.sources`) and write its lock file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vmbuild.cli.common import add_command
from vmbuild.config import load_spec
from vmbuild.errors import SpecError
from vmbuild.sources import used


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
    items = getattr(spec, "contents", None) or getattr(spec, "copy_to_root", ()) or ()
    found = used(items, getattr(spec, "tables", {}))
    if not found:
        raise SpecError(f"{args.spec} names no Debian packages", 'add { deb = "NAME" } items')
    for src, mine, table in found:
        print(src.lock(mine, table, getattr(spec, "architecture", "")))
    return 0
