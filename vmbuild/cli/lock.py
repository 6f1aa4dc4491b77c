"""`vmbuild lock SPEC`: resolve the spec's Debian packages and write its lock file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vmbuild.builders.debcontent import lock_spec
from vmbuild.cli.common import add_command
from vmbuild.config import load_spec
from vmbuild.errors import SpecError
from vmbuild.oci.output import resolve_out


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
    loaded = load_spec(args.spec)
    table = getattr(loaded.spec, "debian", None)
    if table is not None:  # a lock path that cannot be written fails before resolving
        resolve_out(table.lock, directory=False, option="lock file")
    lock = lock_spec(loaded.spec)
    if lock is None or table is None:
        raise SpecError(f"{args.spec} names no Debian packages", 'add { deb = "NAME" } items')
    print(f"{table.lock}: {len(lock.packages)} packages")
    return 0
