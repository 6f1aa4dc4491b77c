"""Where a build's remote caches are: ``--cache-from``/``--cache-to`` (each
``docker://HOST/REPO``; ``--cache-from`` as often as wanted), else the spec's
``cacheFrom``/``cacheTo``, else ``$VMBUILD_CACHE_REPO`` (read and written)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from vmbuild import stepcache
from vmbuild.errors import SpecError
from vmbuild.registry.reference import Repository, parse_repository
from vmbuild.remotecache.remotes import Remotes, _current

ENV = "VMBUILD_CACHE_REPO"


def parse_cache_repo(text: str, where: str = "--cache-from") -> Repository:
    """``docker://HOST/REPO`` (no tag: entries are tagged by key)."""
    if not text.startswith("docker://"):
        raise SpecError(
            f"{where} {text!r} is not a docker:// repository",
            "give e.g. docker://registry.example.com/team/cache",
        )
    name = text.removeprefix("docker://").rstrip("/")
    if "@" in name or ":" in name.rpartition("/")[2]:
        raise SpecError(f"{where} {text!r} names a tag or digest", "give the repository only")
    return parse_repository(name, where)


def remotes_for(
    cache_from: Sequence[str],
    cache_to: str | None,
    spec_from: Sequence[str] = (),
    spec_to: str | None = None,
    tls_verify: bool = True,
) -> Remotes | None:
    """The build's remote caches (None when there are none)."""
    froms = list(cache_from) or list(spec_from)
    to = cache_to or spec_to
    env = os.environ.get(ENV, "").strip()
    if not froms and not to and env:
        froms, to = [env], env
    if not froms and not to:
        return None
    sources = [parse_cache_repo(t, "--cache-from") for t in froms]
    dests = [parse_cache_repo(to, "--cache-to")] if to else []
    return Remotes(sources, dests, tls_verify)


@contextlib.contextmanager
def using(remotes: Remotes | None) -> Iterator[None]:
    """Within the block the step cache asks ``remotes``; pushes happen on :func:`flush`."""
    if remotes is None:
        yield
        return
    token = _current.set(remotes)
    try:
        with stepcache.remote(remotes):
            yield
    finally:
        _current.reset(token)
        remotes.close()
