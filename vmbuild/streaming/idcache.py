"""Layer diff_ids remembered by the fingerprint of the tree they were packed from.

Hashing a layer costs more CPU than reading it, so a layer whose tree is unchanged
since it was last packed (same :attr:`TarPlan.fingerprint`) is written without being
hashed, under the diff_id remembered in the user's cache. As in git's index, a tree
with an entry changed in the last few seconds is "racy" (a second change within the
same clock tick would leave its ctime as it was): it is neither trusted nor
remembered. After a layer is written, its entries are lstat-ed again: a change
means a file changed meanwhile, which fails the build (and forgets the entry).
"""

from __future__ import annotations

import contextlib
import time

from vmbuild import cache
from vmbuild.oci.tarplan import TarPlan

KIND = "layer-ids-v2"


def settled(plan: TarPlan) -> bool:
    """Whether no entry changed within :data:`vmbuild.cache.RACY_NS` of now."""
    return plan.newest_ns < time.time_ns() - cache.RACY_NS


def load(plan: TarPlan) -> str | None:
    """The diff_id remembered for ``plan``'s tree, if it is settled and known."""
    if not settled(plan):
        return None
    try:
        data = cache.read_json(cache.entry(KIND, plan.fingerprint))
        if data is None or int(data["size"]) != plan.size:
            return None
        return str(data["diff_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(plan: TarPlan, diff_id: str) -> None:
    """Remember ``diff_id`` for ``plan``'s tree (if settled); failures are ignored."""
    if not settled(plan):
        return
    cache.write_json(cache.entry(KIND, plan.fingerprint), {"diff_id": diff_id, "size": plan.size})


def forget(plan: TarPlan) -> None:
    with contextlib.suppress(OSError):
        cache.entry(KIND, plan.fingerprint).unlink()
