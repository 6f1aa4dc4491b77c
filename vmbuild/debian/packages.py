"""From a spec's package requests to unpacked packages: the settings (a ``[debian]``
table's values, each defaulting to the host's apt configuration), the lock (used
when it covers the requests, made or refreshed when not, or an error with
``--locked``), then the verified ``.deb`` files of the lock."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmbuild.debian import aptconf
from vmbuild.debian.fetch import Fetcher, fetch_all
from vmbuild.debian.lock import For, Lock, Locked, Request, read_lock, write_lock
from vmbuild.errors import SpecError
from vmbuild.sources import LOCKED_ONLY

log = logging.getLogger("vmbuild")

# GOARCH -> Debian's architecture name
DEBIAN_ARCH = {"386": "i386", "arm": "armhf", "ppc64le": "ppc64el", "loong64": "loong64"}


@dataclass(frozen=True)
class Settings:
    mirror: str
    suite: str
    components: tuple[str, ...]
    keyring: Path
    architecture: str  # Debian's name
    recommends: bool
    essential: bool
    lock: Path
    check_valid_until: bool = True  # false: a snapshot mirror's expired Release is used

    def made_for(self, requests: Sequence[Request]) -> For:
        return For(self.suite, self.architecture, tuple(requests), self.recommends, self.essential)


def settings(
    *,
    goarch: str,
    lock: Path,
    suite: str | None = None,
    mirror: str | None = None,
    components: Sequence[str] | None = None,
    keyring: Path | None = None,
    recommends: bool = False,
    essential: bool = False,
    check_valid_until: bool = True,
) -> Settings:
    """The settings, each missing value from the host's apt sources."""
    if mirror is None or suite is None or keyring is None:
        src = aptconf.default_source(suite)
        suite = suite or (src.suites[0] if src.suites else "")
        mirror = mirror or src.uri
        keyring = keyring or aptconf.keyring_of(src.signed_by)
    return Settings(
        mirror=mirror.rstrip("/"),
        suite=suite,
        components=tuple(components or ("main",)),
        keyring=keyring,
        architecture=DEBIAN_ARCH.get(goarch, goarch),
        recommends=recommends,
        essential=essential,
        lock=lock,
        check_valid_until=check_valid_until,
    )


def make_lock(s: Settings, requests: Sequence[Request], fetcher: Fetcher | None = None) -> Lock:
    """Resolve ``requests`` against the suite's verified indexes (``fetcher`` is given
    each package as it is chosen)."""
    # Imported here: a build from a lock (the warm one) needs neither them nor urllib3.
    from vmbuild.debian.index import RawIndex, load_index
    from vmbuild.debian.release import fetch_release
    from vmbuild.debian.resolve import Universe, resolve

    release = fetch_release(s.mirror, s.suite, s.keyring, s.check_valid_until)
    raw = RawIndex()
    for component in s.components:
        raw.extend(load_index(s.mirror, release, component, s.architecture))
    on_chosen = fetcher.start if fetcher is not None else None
    res = resolve(Universe(raw, s.architecture), requests, s.recommends, s.essential, on_chosen)
    packages = tuple(
        Locked(
            name=c.name,
            version=c.version,
            architecture=c.architecture,
            filename=c.filename,
            size=c.size,
            sha256=c.sha256,
            depends=tuple(res.deps.get(c.name, [])),
            multi_arch=c.multi_arch,
            essential=c.essential,
        )
        for c in res.chosen.values()
    )
    return Lock(s.made_for(requests), release.date, packages)


def current_lock(
    s: Settings, requests: Sequence[Request], relock: bool = False, fetcher: Fetcher | None = None
) -> Lock:
    """The lock to build from: the file's when it covers ``requests``, else a new one
    (written to the file), unless only a locked build is allowed."""
    wanted = s.made_for(requests)
    if s.lock.exists() and not relock:
        lock = read_lock(s.lock)
        if lock.covers(wanted):
            return lock
        if LOCKED_ONLY.get():
            raise SpecError(
                f"lock file {s.lock} does not cover the spec's packages or [debian] settings",
                "run vmbuild lock on the spec (or build without --locked)",
            )
        log.info("lock file %s is stale: resolving again", s.lock)
    elif LOCKED_ONLY.get():
        raise SpecError(f"--locked: there is no lock file {s.lock}", "run vmbuild lock on the spec")
    lock = make_lock(s, requests, fetcher)
    write_lock(s.lock, lock)
    log.info("wrote %s (%d packages)", s.lock, len(lock.packages))
    return lock


def fetch(
    s: Settings, packages: Sequence[Locked], fetcher: Fetcher | None = None
) -> dict[str, Path]:
    """name -> unpacked directory, for each of ``packages`` (by ``fetcher``, which may
    have started some while the lock was made)."""
    if fetcher is None:
        return fetch_all(s.mirror, packages)
    return fetcher.wait(packages)
