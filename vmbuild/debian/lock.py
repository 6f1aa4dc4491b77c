"""The lock file: every package of a spec pinned (name, version, architecture, pool
path, size, SHA256, the names it depends on) with what it was resolved for (the
requests, suite, architecture, Release date). JSON, keys sorted: the same resolution
writes the same bytes. A build from a lock reads no index."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vmbuild.errors import SpecError
from vmbuild.oci.output import atomic_file, resolve_out
from vmbuild.sources import Item

LOCK_VERSION = 1
_SHA = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*")  # a package name (Debian policy 5.6.1)
# A pool path: plain relative components, each led by a letter or digit (no "", ".",
# "..", leading "/", white space, control character, "\\", "?" or "#")
_POOL_PART = r"[A-Za-z0-9][A-Za-z0-9+_.~%:@=,-]*"
_POOL_PATH = re.compile(rf"{_POOL_PART}(?:/{_POOL_PART})*")
VERSION = re.compile(r"[0-9A-Za-z.+~:-]+")
ARCH = re.compile(r"[a-z0-9][a-z0-9-]*")  # an architecture name
MAX_POOL_PATH = 1024
MAX_SIZE = 1 << 40  # a .deb's size (1 TiB: far above any package)


def pool_path_problem(filename: str) -> str | None:
    """Why ``filename`` (an index's or lock's ``Filename``, relative to the mirror) is not
    a plain relative path inside the mirror; None when it is one."""
    if len(filename) > MAX_POOL_PATH:
        return f"a Filename longer than {MAX_POOL_PATH} characters"
    if not _POOL_PATH.fullmatch(filename) or ".." in filename.split("/"):
        return f"an unsafe Filename {filename!r} (not a plain relative path)"
    return None


def size_problem(size: object) -> str | None:
    """Why ``size`` (a package's Size) is not a whole number of bytes from 0 to
    :data:`MAX_SIZE`; None when it is one."""
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        return f"a Size {size!r} that is not a whole number from 0 to {MAX_SIZE}"
    return None


@dataclass(frozen=True)
class Request(Item):
    """A package a spec asks for (at a version, or the newest): the spec's item
    ``{ deb = "name", version = "..." }`` and a lock's request alike."""

    source: ClassVar[str] = "deb"
    name: str
    version: str | None = None

    def describe(self) -> str:
        return self.name + (f"={self.version}" if self.version else "")


@dataclass(frozen=True)
class Locked:
    """One pinned package (what an SBOM needs: name, version, architecture, sha256)."""

    name: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    depends: tuple[str, ...] = ()
    multi_arch: str = ""
    essential: bool = False


@dataclass(frozen=True)
class For:
    """What a lock was resolved for: a spec asking for something else makes it stale."""

    suite: str
    architecture: str
    requests: tuple[Request, ...]
    recommends: bool = False
    essential: bool = False


@dataclass(frozen=True)
class Lock:
    made_for: For
    release_date: str = ""
    packages: tuple[Locked, ...] = field(default_factory=tuple)

    def by_name(self) -> dict[str, Locked]:
        return {p.name: p for p in self.packages}

    def covers(self, wanted: For) -> bool:
        have = self.made_for
        return (
            have.suite == wanted.suite
            and have.architecture == wanted.architecture
            and have.recommends == wanted.recommends
            and have.essential == wanted.essential
            and set(wanted.requests) <= set(have.requests)
        )


def to_json(lock: Lock) -> str:
    data: dict[str, Any] = {
        "lockVersion": LOCK_VERSION,
        "suite": lock.made_for.suite,
        "architecture": lock.made_for.architecture,
        "recommends": lock.made_for.recommends,
        "essential": lock.made_for.essential,
        "requests": [
            {"name": r.name, **({"version": r.version} if r.version else {})}
            for r in sorted(lock.made_for.requests, key=lambda r: (r.name, r.version or ""))
        ],
        "releaseDate": lock.release_date,
        "packages": [
            {**asdict(p), "depends": list(p.depends)}
            for p in sorted(lock.packages, key=lambda p: p.name)
        ],
    }
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_lock(path: Path, lock: Lock) -> None:
    """Write ``lock`` to ``path`` as any output is written (:mod:`vmbuild.oci.output`):
    a symlink there is followed (its target written), anything but a regular file is
    refused untouched, and the file is replaced whole."""
    with atomic_file(resolve_out(path, directory=False, option="lock file")) as f:
        f.write(to_json(lock).encode())


def _bad(path: Path, why: str) -> SpecError:
    return SpecError(
        f"lock file {path} is malformed: {why}",
        f"delete it and run vmbuild lock {path.with_suffix('') if path.suffix == '.lock' else ''}",
    )


def read_lock(path: Path) -> Lock:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read lock file {path}: {exc.strerror}", "check it") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(path, f"not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("lockVersion") != LOCK_VERSION:
        raise _bad(path, f"lockVersion is not {LOCK_VERSION}")
    try:
        made_for = For(
            suite=_str(data["suite"]),
            architecture=_str(data["architecture"]),
            requests=tuple(
                Request(_str(r["name"]), _str(r["version"]) if "version" in r else None)
                for r in data["requests"]
            ),
            recommends=_bool(data["recommends"]),
            essential=_bool(data["essential"]),
        )
        packages = tuple(_package(p) for p in data["packages"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"{type(exc).__name__}: {exc}") from exc
    names = {p.name for p in packages}
    for p in packages:
        missing = [d for d in p.depends if d not in names]
        if missing:
            raise _bad(path, f"{p.name} depends on {missing[0]}, which it does not list")
    return Lock(made_for, _str(data.get("releaseDate", "")), packages)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _package(p: dict[str, Any]) -> Locked:
    locked = Locked(
        name=_str(p["name"]),
        version=_str(p["version"]),
        architecture=_str(p["architecture"]),
        filename=_str(p["filename"]),
        size=p["size"],
        sha256=_str(p["sha256"]),
        depends=tuple(_str(d) for d in p["depends"]),
        multi_arch=_str(p.get("multi_arch", "")),
        essential=_bool(p.get("essential", False)),
    )
    if not NAME.fullmatch(locked.name):
        raise ValueError(f"bad package name {locked.name!r}")
    if not _SHA.fullmatch(locked.sha256):
        raise ValueError(f"{locked.name}: bad sha256")
    if not VERSION.fullmatch(locked.version):
        raise ValueError(f"{locked.name}: bad version {locked.version!r}")
    if not ARCH.fullmatch(locked.architecture):
        raise ValueError(f"{locked.name}: bad architecture {locked.architecture!r}")
    if locked.multi_arch not in ("", "same", "foreign", "allowed", "no"):
        raise ValueError(f"{locked.name}: bad multi_arch {locked.multi_arch!r}")
    problem = pool_path_problem(locked.filename) or size_problem(locked.size)
    if problem is not None:
        raise ValueError(f"{locked.name} has {problem}")
    return locked
