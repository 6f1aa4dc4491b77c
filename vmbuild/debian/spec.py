"""Debian packages in a spec: the item ``{ deb = "name", version = "..." }`` (a
:class:`~vmbuild.debian.lock.Request`, one name rule with the lock's) and the optional
``[debian]`` table (where packages come from). Every key of the table may be left out:
the build takes it from the host's apt configuration (:mod:`vmbuild.debian.packages`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.debian.lock import NAME, VERSION, Request
from vmbuild.errors import SpecError
from vmbuild.sources import SpecFields

_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class DebianTable:
    lock: Path
    suite: str | None = None
    mirror: str | None = None
    components: tuple[str, ...] = ("main",)
    keyring: Path | None = None
    recommends: bool = False
    essential: bool = False
    configure: bool = False
    check_valid_until: bool = True


def parse_item(value: Any, place: str) -> Request | None:
    """``{ deb = ..., version = ... }`` as a Request; None when ``value`` is not one."""
    if not isinstance(value, dict) or "deb" not in value:
        return None
    extra = set(value) - {"deb", "version"}
    if extra:
        raise SpecError(
            f"{place}: unknown key {sorted(extra)[0]!r}",
            'write { deb = "redis-server" } or { deb = "bash", version = "5.2.15-2+b2" }',
        )
    name, version = value["deb"], value.get("version")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpecError(f"{place}: deb = {name!r} is not a Debian package name", "fix the name")
    if version is not None and (not isinstance(version, str) or not VERSION.fullmatch(version)):
        raise SpecError(f"{place}: version = {version!r} is not a Debian version", "fix it")
    return Request(name, version)


def parse_table(spec: SpecFields, sub: SpecFields | None) -> DebianTable:
    """The ``[debian]`` table, checked (its defaults are the host's, filled in later)."""
    default_lock = spec.base_dir / (Path(spec.where).name + ".lock")
    if sub is None:
        return DebianTable(lock=default_lock)
    suite = sub.get_str("suite")
    if suite is not None and not _SUITE.fullmatch(suite):
        raise SpecError(f"{sub.where}: suite = {suite!r} is not a suite name", "fix it")
    mirror = sub.get_str("mirror")
    if mirror is not None and not mirror.startswith(("http://", "https://", "file:///")):
        raise SpecError(
            f"{sub.where}: mirror = {mirror!r} is not an http(s) or file URL",
            "write the archive's root, as in apt's sources (\"http://HOST/debian\")",
        )

    def component(value: Any, where: str) -> str:
        if not isinstance(value, str) or not _SUITE.fullmatch(value):
            raise SpecError(f"{sub.where}: {where} = {value!r} is not a component", "fix it")
        return value

    components = tuple(sub.get_list("components", component)) or ("main",)
    keyring = sub.get_path("keyring")
    table = DebianTable(
        lock=sub.get_path("lock") or default_lock,
        suite=suite,
        mirror=mirror,
        components=components,
        keyring=keyring,
        recommends=sub.get_bool("recommends"),
        essential=sub.get_bool("essential"),
        configure=sub.get_bool("configure"),
        check_valid_until=sub.get_bool("checkValidUntil", True),
    )
    sub.finish()
    return table


def check(table: DebianTable, function: str, architecture: str, where: str) -> None:
    """``configure = true`` runs maintainer scripts in the build VM, which runs the
    host's architecture only."""
    from vmbuild.oci.image import host_goarch

    host = host_goarch()
    if table.configure and architecture != host:
        raise SpecError(
            f"{where}: [debian] configure = true needs the build VM to run {architecture} "
            f"programs, but it runs {host} only",
            "leave configure out (packages are unpacked, not configured) or build for " + host,
        )
    if table.configure and function != "buildImage":
        raise SpecError(
            f"{where}: [debian] configure = true (maintainer scripts in the build VM) is "
            f"buildImage's; {function} has no build VM",
            "build with buildImage, or leave configure out (packages are unpacked with a "
            "dpkg database, their scripts not run; add users with fakeNss)",
        )
