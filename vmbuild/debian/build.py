"""A spec's Debian packages, ready to be layered: the lock (read, or made), the
unpacked packages, each package's layer entries, the merged-/usr links and the dpkg
status. The layered builders make a content unit of each package
(:meth:`DebContent.add_units`), buildImage puts them all in its one layer
(:meth:`DebContent.add_to_tree`);
with ``configure = true`` (buildImage) the host unpacks only the Essential set and
dpkg (what the image's own dpkg needs to run); in the build VM their preinsts run, then
``dpkg --configure -a``, then ``dpkg --install`` of every other package's ``.deb``
(dependency order: each preinst before its package's files appear, then the postinsts):
:func:`configure_script`, the ``.deb`` files in :attr:`DebContent.guest_debs`.

Where the SBOM finds a package's name, version, architecture and .deb SHA256:
``DebContent.lock.packages`` (:class:`vmbuild.debian.lock.Locked`), one per unit
``deb:<name>``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from vmbuild import cache
from vmbuild.debian import content, debfile, dpkgdb
from vmbuild.debian.debfile import merged_usr
from vmbuild.debian.fetch import Fetcher, cached_deb, deb_path, naming_file
from vmbuild.debian.lock import Lock, Locked, Request
from vmbuild.debian.packages import Settings, current_lock, fetch
from vmbuild.oci.tree import Tree
from vmbuild.units.graph import Graph, Unit

USR_UNIT = "deb:usr-merge"
STATUS_UNIT = "deb:dpkg-status"


@dataclass
class DebContent:
    lock: Lock
    packages: dict[str, content.Entries] = field(default_factory=dict)  # name -> entries
    links: content.Entries = field(default_factory=dict)
    status: content.Entries = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # dpkg info names, dependencies first
    architecture: str = ""  # Debian's name
    # configure = true: the packages the guest's dpkg installs (lock names, dependencies
    # first, in batches none of which pre-depends on its own members), their .deb files
    guest: list[list[str]] = field(default_factory=list)
    guest_debs: dict[str, Path] = field(default_factory=dict)
    source_date: int | None = None  # the lock's Release date: SOURCE_DATE_EPOCH in the VM

    def on_host(self, name: str) -> bool:
        """Whether the host unpacks package ``name`` into the layer."""
        return not any(name in batch for batch in self.guest)

    def provides(self, path: str) -> bool:
        rel = merged_usr(path.lstrip("/"))
        return any(rel in e for e in self.packages.values())

    def add_units(self, graph: Graph) -> None:
        """One unit per package (``deb:NAME``), referencing its dependencies' units and
        the merged-/usr links; the dpkg status is a unit of its own."""
        graph.units[USR_UNIT] = Unit(USR_UNIT, dict(self.links))
        for pkg in self.lock.packages:
            refs = {f"deb:{d}" for d in pkg.depends} | {USR_UNIT}
            name = f"deb:{pkg.name}"
            graph.units[name] = Unit(name, dict(self.packages[pkg.name]), refs)
        graph.units[STATUS_UNIT] = Unit(STATUS_UNIT, dict(self.status))

    def add_to_tree(self, tree: Tree) -> None:
        """Every host-unpacked package's entries, the links and the status (buildImage)."""
        for name in sorted(self.packages):
            if self.on_host(name):
                tree.entries.update(self.packages[name])
        tree.entries.update(self.links)
        tree.entries.update(self.status)


@dataclass(frozen=True)
class Pinned:
    """What a spec's packages resolve to before any is fetched: the settings, the lock
    and whether dpkg configures them (``remotelayers`` keys on these)."""

    settings: Settings
    lock: Lock
    configure: bool


def deb_lock(s: Settings, requests: list[Request], configure: bool) -> Pinned:
    """The lock of ``requests``, nothing fetched (a remote cache may hold their layers)."""
    return Pinned(s, current_lock(s, requests), configure)


def deb_content(s: Settings, requests: list[Request], configure: bool, workdir: Path) -> DebContent:
    """The packages of ``requests``, each fetched as the resolver picks it."""
    with Fetcher(s.mirror, read=not configure) as fetcher:  # (guest packages: .debs only)
        pinned = Pinned(s, current_lock(s, requests, fetcher=fetcher), configure)
        return content_of(pinned, workdir, fetcher)


def content_of(pinned: Pinned, workdir: Path, fetcher: Fetcher | None = None) -> DebContent:
    """The packages of ``pinned``, fetched (unless in the cache; by ``fetcher`` when it
    has started some) and read."""
    s, lock = pinned.settings, pinned.lock
    host = _essential_closure(lock) if pinned.configure else {p.name for p in lock.packages}
    unpacked = fetch(s, [p for p in lock.packages if p.name in host], fetcher)
    out = DebContent(lock, architecture=s.architecture)
    ordered = _ordered(lock)
    by_name = lock.by_name()
    if pinned.configure:  # the others: their .debs (the guest's dpkg reads them)
        guest = [n for n in ordered if n not in host]
        if fetcher is not None:
            fetcher.downloaded([by_name[n] for n in guest])
        debs = {n: _deb_file(s, by_name[n]) for n in guest}
        pre = {n: _pre_depends(debs[n], by_name[n], s.mirror) for n in guest}
        out.guest = _batches(guest, pre)
        out.guest_debs = debs
        out.source_date = _epoch(lock.release_date)
    out.order = [_info(by_name[n]) for n in ordered if out.on_host(n)]
    for name in sorted(unpacked):
        out.packages[name] = content.package_entries(unpacked[name], by_name[name])
    anchor = next(iter(unpacked.values()))
    out.links = content.usr_links(out.packages.values(), anchor)
    status = dpkgdb.UNPACKED if pinned.configure else dpkgdb.STATUS
    on_host = [unpacked[n] for n in sorted(unpacked) if out.on_host(n)]
    out.status = content.status_entries(on_host, workdir, status)
    return out


def _essential_closure(lock: Lock) -> set[str]:
    """The Essential packages and dpkg, with everything they depend on: what the host
    unpacks for the image's dpkg to run (configure = true)."""
    deps = {p.name: p.depends for p in lock.packages}
    todo = [p.name for p in lock.packages if p.essential or p.name == "dpkg"]
    done: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in done and name in deps:
            done.add(name)
            todo.extend(deps[name])
    return done


def _relation_names(value: str) -> set[str]:
    """The package names a Depends-like field names (alternatives included), as the
    resolver parses relations (python-debian)."""
    from vmbuild.debian.resolve import relations  # (configure = true only)

    return {alt["name"] for group in relations(value) for alt in group}


def _info(pkg: Locked) -> str:
    return dpkgdb.info_name(pkg.name, pkg.multi_arch, pkg.architecture)


def _pre_depends(deb: Path, pkg: Locked, mirror: str) -> str:
    """The Pre-Depends field of ``deb`` (only its control file is read, and checked: the
    guest's dpkg installs the package under the name it gives)."""
    from debian.deb822 import Deb822  # (configure = true only)

    what = f"{pkg.name} {pkg.version} ({pkg.filename})"
    try:
        text = debfile.control_text(deb, what)
    except debfile.DebError as exc:
        raise naming_file(exc, deb) from exc
    debfile.check_control(
        text, debfile.Identity(pkg.name, pkg.version, pkg.architecture, mirror), what
    )
    return str(Deb822(text).get("Pre-Depends", ""))


def _batches(names: list[str], pre_depends: dict[str, str]) -> list[list[str]]:
    """``names`` (dependencies first) cut where a package pre-depends on one before it in
    the same batch: dpkg --install unpacks a batch, then configures it, and a
    pre-dependency must be configured before its dependent is unpacked."""
    batches: list[list[str]] = []
    for name in names:
        pre = _relation_names(pre_depends[name])
        if not batches or pre & set(batches[-1]):
            batches.append([])
        batches[-1].append(name)
    return batches


def _deb_file(s: Settings, pkg: Locked) -> Path:
    """The package's verified .deb in the cache (fetched again if it was removed), held
    for the build."""
    cache.hold(deb_path(pkg))
    return cached_deb(s.mirror, pkg)


def _epoch(date: str) -> int | None:
    """A Release file's Date as seconds since the epoch (None when it has none)."""
    from vmbuild.debian.release import seconds_of  # (configure = true only)

    seconds = seconds_of(date)
    return None if seconds is None else int(seconds)


def _ordered(lock: Lock) -> list[str]:
    """The lock's package names, each after what it depends on (cycles broken by name)."""
    deps = {p.name: p.depends for p in lock.packages}
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for d in deps.get(name, ()):
            visit(d)
        done.append(name)

    for name in sorted(deps):
        visit(name)
    return done


# dpkg's status lines (--status-fd, its machine interface, apart from what the scripts
# print) -> the first maintainer script that failed, as PACKAGE SCRIPT STATUS on fd 3:
# the guest's status record carries it to the host (vmbuild.sources.GuestStep)
FAILED_SCRIPT = r"""set -o pipefail
failed='^status: .* : error : (new|installed|old) ([^ ]+) package (pre|post)-'
failed+='(installation|removal) script subprocess returned error exit status ([0-9]+)$'
scripts() {
    local line said=
    while IFS= read -r line; do
        if [[ -z $said && $line =~ $failed ]]; then
            said=${BASH_REMATCH[3]}
            [[ ${BASH_REMATCH[4]} == installation ]] && said+=inst || said+=rm
            echo "${BASH_REMATCH[2]} $said ${BASH_REMATCH[5]}" >&3
        fi
    done
}
dpkg() { command dpkg --status-fd 4 "$@" 4>&1 >&2 3>&- | scripts; }
"""
# where the guest finds the .deb files (vmbuild.vm.steps: the debs disk, read-only)
GUEST_DEBS = "/.vmbuild/step/debs"
# what dpkg and the maintainer scripts leave that differs from one build to the next:
# logs with times, the previous versions of its and debconf's databases, ldconfig's
# cache of inode numbers and mtimes
VOLATILE = (
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/lib/dpkg/status-old",
    "/var/lib/dpkg/diversions-old",
    "/var/lib/dpkg/statoverride-old",
    "/var/lib/dpkg/available-old",
    "/var/cache/debconf/config.dat-old",
    "/var/cache/debconf/passwords.dat-old",
    "/var/cache/debconf/templates.dat-old",
    "/var/cache/ldconfig/aux-cache",
)


def configure_script(debs: DebContent) -> str:
    """What runs as root in the image before runAsRoot (configure = true), as
    ``dpkg --install`` would do it, offline and without questions: the preinst of each
    package the host unpacked (the Essential set), ``dpkg --configure -a``, then
    ``dpkg --install`` of the other packages' .deb files, dependencies first."""
    q = shlex.quote  # every word: the names are checked, and quoted all the same
    date = f" SOURCE_DATE_EPOCH={debs.source_date:d}" if debs.source_date is not None else ""
    lines = [
        "export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8"
        + date,
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DPKG_ADMINDIR=/var/lib/dpkg",
        FAILED_SCRIPT,
    ]
    for name in debs.order:
        script = q(f"/var/lib/dpkg/info/{name}.preinst")
        pkg, _, arch = name.partition(":")
        env = (
            f"DPKG_MAINTSCRIPT_PACKAGE={q(pkg)} DPKG_MAINTSCRIPT_NAME=preinst "
            f"DPKG_MAINTSCRIPT_ARCH={q(arch or debs.architecture)} DPKG_ROOT="
        )
        lines.append(
            f"if [ -x {script} ]; then {env} {script} install 3>&-"
            f" || {{ s=$?; echo {q(pkg)} preinst $s >&3; exit $s; }}; fi"
        )
    lines.append("dpkg --configure -a")
    for batch in debs.guest:
        files = " ".join(q(f"{GUEST_DEBS}/{debs.guest_debs[n].name}") for n in batch)
        lines.append(f"dpkg --install {files}")
    lines.append("rm -f " + " ".join(q(v) for v in VOLATILE))
    return "\n".join(lines) + "\n"
