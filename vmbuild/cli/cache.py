"""`vmbuild cache ls` and `vmbuild cache prune [--older-than DAYS] [--max-size SIZE]`."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from vmbuild import cachelist
from vmbuild.cache import cache_dir
from vmbuild.cli.common import add_command
from vmbuild.errors import SpecError
from vmbuild.progress import human


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "cache",
        help="list or prune the local cache",
        description="The local cache (kernels, initramfs, blobs, pulled bases, lower images, "
        "step results, ELF and diff_id records, Debian packages): list it with sizes, or "
        "prune the least recently used entries.",
        examples=[
            "vmbuild cache ls",
            "vmbuild cache prune --older-than 30 --max-size 20G",
            "vmbuild cache prune --max-size 5G --dry-run",
        ],
    )
    csub = p.add_subparsers(
        dest="cache_command", required=True, metavar="ACTION", help="ls or prune"
    )
    ls = add_command(
        csub,
        "ls",
        help="what the cache holds, by kind, with sizes",
        examples=["vmbuild cache ls", "vmbuild cache ls --entries"],
    )
    ls.add_argument("--entries", action="store_true", help="list every entry too")
    ls.set_defaults(func=cmd_ls)
    pr = add_command(
        csub,
        "prune",
        help="remove least recently used entries",
        examples=["vmbuild cache prune --older-than 30", "vmbuild cache prune --max-size 10G"],
    )
    pr.add_argument("--older-than", metavar="DAYS", help="remove entries unused for DAYS days")
    pr.add_argument(
        "--max-size", metavar="SIZE", help="then remove the oldest until the rest fit (e.g. 10G)"
    )
    pr.add_argument(
        "--dry-run", "-n", action="store_true", help="say what would go; remove nothing"
    )
    pr.set_defaults(func=cmd_prune)


def _age(seconds: float) -> str:
    days = seconds / cachelist.DAY
    return f"{days:.1f} d" if days >= 1 else f"{seconds / 3600:.1f} h"


def cmd_ls(args: argparse.Namespace) -> int:
    root = cache_dir()
    found = cachelist.entries(root)
    now = time.time()
    print(f"cache: {root}")
    print(f"{'KIND':<18} {'ENTRIES':>7} {'SIZE':>10}  {'OLDEST USE':>10}  WHAT")
    for s in cachelist.summary(found, now):
        what = cachelist.KINDS.get(s.kind, "")
        size = human(s.size, binary=True)
        print(f"{s.kind:<18} {s.count:>7} {size:>10}  {_age(s.oldest):>10}  {what}".rstrip())
        if args.entries:
            for e in found:
                if e.kind == s.kind:
                    rel = e.path.relative_to(root)
                    print(f"  {rel}  {human(e.size, binary=True)}  {_age(now - e.used)}")
    total = sum(e.size for e in found)
    print(f"{'total':<18} {len(found):>7} {human(total, binary=True):>10}")
    return 0


def _days(text: str) -> float:
    """--older-than's value: a finite number of days, not negative."""
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not math.isfinite(days):
        raise SpecError(f"--older-than {text!r} is not a number of days", "e.g. --older-than 30")
    if days < 0:
        raise SpecError("--older-than must not be negative", "give a number of days, e.g. 30")
    return days


def cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.max_size is None:
        raise SpecError("cache prune needs --older-than or --max-size", "e.g. --older-than 30")
    older_than = None if args.older_than is None else _days(args.older_than)
    max_size = None if args.max_size is None else cachelist.parse_size(args.max_size)
    if args.dry_run:
        chosen = cachelist.choose(cachelist.entries(), older_than, max_size)
        for e in chosen:
            print(f"would remove {e.path} ({human(e.size, binary=True)})")
        print(f"would free {human(sum(e.size for e in chosen), binary=True)}")
        return 0
    removed, busy = cachelist.prune(older_than, max_size)
    freed = sum(e.size for e in removed)
    print(f"removed {len(removed)} entries, freed {human(freed, binary=True)}")
    for e in busy:
        print(f"kept {e.path}: in use")
    return 0
