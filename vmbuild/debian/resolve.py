"""Choosing packages as apt does for a fresh install: every request and every Depends /
Pre-Depends (and Recommends when asked) satisfied, alternatives tried in order (one
already chosen first), versions compared by Debian's ordering (python-debian), virtual
packages through Provides, Multi-Arch qualifiers; Conflicts and Breaks among the chosen
set are errors naming both packages."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from debian.deb822 import PkgRelation
from debian.debian_support import version_compare

from vmbuild.debian.index import Candidate, RawIndex, candidate
from vmbuild.debian.lock import Request
from vmbuild.errors import VmbuildError

Relation = dict[str, Any]  # one alternative as PkgRelation.parse_relations gives it

_OPS = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}


# A package name at the start of a Provides field or after a comma or bar (the
# characters python-debian's relation parser allows in a name).
_NAME = re.compile(r"(?:^|[,|])\s*([a-zA-Z0-9][a-zA-Z0-9+.-]*)")


class ResolveError(VmbuildError):
    """The requested packages cannot be installed together."""


@dataclass
class Resolution:
    chosen: dict[str, Candidate] = field(default_factory=dict)
    deps: dict[str, list[str]] = field(default_factory=dict)  # name -> chosen names it needs


def relations(text: str) -> list[list[Relation]]:
    if not text.strip():
        return []
    return cast(list[list[Relation]], PkgRelation.parse_relations(text))


def satisfies(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    op, wanted = constraint
    return bool(_OPS[op](version_compare(version, wanted)))


class Universe:
    """The packages of one architecture (and ``all``), newest version first; each
    package's paragraphs are parsed when it is first looked at."""

    def __init__(self, raw: RawIndex, arch: str):
        self.arch = arch
        self.raw = raw
        self._parsed: dict[str, list[Candidate]] = {}
        self._providers: dict[str, list[tuple[str, str | None]]] = {}  # by virtual name
        self._naming: dict[str, list[int]] | None = None  # name -> Provides fields with it

    def versions(self, name: str) -> list[Candidate]:
        found = self._parsed.get(name)
        if found is None:
            found = [candidate(p) for p in self.raw.paragraphs(name)]
            found = [c for c in found if c.architecture in (self.arch, "all")]
            found.sort(key=_VersionKey, reverse=True)
            self._parsed[name] = found
        return found

    def names(self) -> list[str]:
        return self.raw.names()

    def providers(self, virtual: str) -> list[tuple[Candidate, str | None]]:
        """(package, the version it provides) for each package providing ``virtual``."""
        if self._naming is None:
            # Only the Provides fields that name ``virtual`` are parsed by python-debian
            # (parsing all of a suite's, 10,000, takes longer than the rest of a
            # resolution); the names in each are found by a quick split first.
            self._naming = {}
            for i, (_, text) in enumerate(self.raw.provides):
                for word in _NAME.findall(text):
                    self._naming.setdefault(word, []).append(i)
        named = self._providers.get(virtual)
        if named is None:
            named = []
            for i in dict.fromkeys(self._naming.get(virtual, ())):
                name, text = self.raw.provides[i]
                for group in relations(text):
                    for rel in group:
                        if rel["name"] == virtual:
                            ver = rel["version"][1] if rel.get("version") else None
                            named.append((name, ver))
            self._providers[virtual] = named
        out: list[tuple[Candidate, str | None]] = []
        for name, ver in named:
            for c in self.versions(name):
                if any(r["name"] == virtual for g in relations(c.provides) for r in g):
                    out.append((c, ver))
                    break
        return out

    def essential(self) -> list[str]:
        return sorted(n for n in self.raw.essential() if self.versions(n))


class _VersionKey:
    def __init__(self, c: Candidate):
        self.v = c.version

    def __lt__(self, other: _VersionKey) -> bool:
        return bool(version_compare(self.v, other.v) < 0)


def _arch_ok(rel: Relation, arch: str) -> bool:
    qual = rel.get("archqual")
    return qual in (None, "any", "native", arch)


def resolve(
    universe: Universe,
    requests: Sequence[Request],
    recommends: bool = False,
    essential: bool = False,
    on_chosen: Callable[[Candidate], None] | None = None,
) -> Resolution:
    """The packages ``requests`` need; ``on_chosen`` is told of each as it is chosen
    (a choice is never taken back: an error is raised instead)."""
    res = Resolution()
    parent: dict[str, str | None] = {}
    todo: list[str] = []

    def add(c: Candidate, why: str | None) -> None:
        res.chosen[c.name] = c
        parent[c.name] = why
        if on_chosen is not None:
            on_chosen(c)
        todo.append(c.name)

    for req in [*requests, *(Request(n) for n in (universe.essential() if essential else []))]:
        have = res.chosen.get(req.name)
        if have is not None:
            if req.version is not None and have.version != req.version:
                raise ResolveError(
                    f"{req.name} is asked for at version {req.version} and at {have.version}",
                    "ask for one version",
                )
            continue
        add(_requested(universe, req), None)
    while todo:
        name = todo.pop(0)
        pkg = res.chosen[name]
        needed: list[str] = []
        fields = [pkg.pre_depends, pkg.depends] + ([pkg.recommends] if recommends else [])
        for i, text in enumerate(fields):
            for group in relations(text):
                picked = _pick(universe, res, group)
                if picked is None:
                    if i == 2:
                        continue  # a Recommends that cannot be met is left out, as apt does
                    raise ResolveError(
                        f"cannot satisfy {_show(group)}, needed by {_chain(name, parent)}",
                        f"no version of it in the suite for {universe.arch} fits; "
                        "ask for other versions or check the suite",
                    )
                if picked.name not in res.chosen:
                    add(picked, name)
                if picked.name != name and picked.name not in needed:
                    needed.append(picked.name)
        res.deps[name] = sorted(needed)
    _check_conflicts(res)
    return res


def _requested(universe: Universe, req: Request) -> Candidate:
    versions = universe.versions(req.name)
    if not versions:
        providers = universe.providers(req.name)
        if providers and req.version is None:
            return sorted(providers, key=lambda p: p[0].name)[0][0]
        close = difflib.get_close_matches(req.name, universe.names(), n=3)
        raise ResolveError(
            f"no package {req.name!r} for {universe.arch} in the suite",
            f"did you mean {', '.join(close)}?" if close else "check the name (apt-cache search)",
        )
    if req.version is None:
        return versions[0]
    for c in versions:
        if c.version == req.version:
            return c
    raise ResolveError(
        f"{req.name} has no version {req.version} in the suite",
        "it has " + ", ".join(c.version for c in versions),
    )


def _pick(universe: Universe, res: Resolution, group: list[Relation]) -> Candidate | None:
    """The package satisfying one ``a | b`` group: one already chosen, else the first
    alternative that can be satisfied (its newest fitting version, else a provider)."""
    usable = [rel for rel in group if _arch_ok(rel, universe.arch)]
    for rel in usable:
        c = res.chosen.get(rel["name"])
        if c is not None and satisfies(c.version, rel.get("version")):
            return c
        for prov, ver in universe.providers(rel["name"]):
            chosen = res.chosen.get(prov.name)
            if chosen is prov and _provided_ok(ver, rel.get("version")):
                return prov
    for rel in usable:
        if rel["name"] in res.chosen:
            continue  # chosen at a version that does not fit: try the next alternative
        for c in universe.versions(rel["name"]):
            if satisfies(c.version, rel.get("version")):
                return c
        for prov, ver in sorted(universe.providers(rel["name"]), key=lambda p: p[0].name):
            if (
                prov.name not in res.chosen
                and _provided_ok(ver, rel.get("version"))
                and universe.versions(prov.name)[0] is prov
            ):
                return prov
    return None


def _provided_ok(provided: str | None, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    return provided is not None and satisfies(provided, constraint)


def _check_conflicts(res: Resolution) -> None:
    for name in sorted(res.chosen):
        pkg = res.chosen[name]
        for kind, text in (("conflicts with", pkg.conflicts), ("breaks", pkg.breaks)):
            for group in relations(text):
                for rel in group:
                    other = res.chosen.get(rel["name"])
                    if (
                        other is not None
                        and other.name != name
                        and satisfies(other.version, rel.get("version"))
                    ):
                        raise ResolveError(
                            f"{name} {pkg.version} {kind} {other.name} {other.version}, "
                            "and both are needed",
                            "leave one of them out of the contents (or pin other versions)",
                        )
                    for c in res.chosen.values():
                        if c.name == name or c.name == rel["name"] or rel.get("version"):
                            continue
                        if any(r["name"] == rel["name"] for g in relations(c.provides) for r in g):
                            raise ResolveError(
                                f"{name} {pkg.version} {kind} {rel['name']}, which "
                                f"{c.name} provides, and both are needed",
                                "leave one of them out of the contents",
                            )


def _show(group: list[Relation]) -> str:
    parts = []
    for rel in group:
        ver = rel.get("version")
        parts.append(rel["name"] + (f" ({ver[0]} {ver[1]})" if ver else ""))
    return " | ".join(parts)


def _chain(name: str, parent: dict[str, str | None]) -> str:
    chain = [name]
    while (up := parent.get(chain[-1])) is not None and up not in chain:
        chain.append(up)
    return " <- ".join(chain)
