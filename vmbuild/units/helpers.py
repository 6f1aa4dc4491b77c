"""The manual's environment helpers, as trees to merge into a layer.

- usrBinEnv: ``/usr/bin/env`` (the host's coreutils env) with its shared libraries.
- binSh: ``/bin/sh`` -> ``/usr/bin/bash`` (the host's bash, the manual's bashInteractive)
  with its shared libraries.
- caCertificates: the host's CA bundle at ``/etc/ssl/certs/ca-certificates.crt``, with the
  ``ca-bundle.crt`` names other distributions look for as symlinks.
- fakeNss: ``/etc/passwd`` and ``/etc/group`` with root and nobody (plus
  ``extraPasswdLines`` / ``extraGroupLines``), ``/etc/nsswitch.conf`` (hosts: files dns)
  and an empty ``/var/empty``.

Where the manual takes a Nix package, vmbuild takes the host's file: files keep their host
paths in the image, and programs bring their shared-library closure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vmbuild.errors import SpecError
from vmbuild.oci.tree import Tree

HELPERS = ("usrBinEnv", "binSh", "caCertificates", "fakeNss")

PASSWD = (
    "root:x:0:0:root user:/var/empty:/bin/sh",
    "nobody:x:65534:65534:nobody:/var/empty:/bin/sh",
)
GROUP = ("root:x:0:", "nobody:x:65534:")
NSSWITCH = "hosts: files dns\n"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# paths -> every path they need (ELF closures), the helpers resolve their programs with
ClosureOf = Callable[[Iterable[Path]], Iterable[Path]]


@dataclass(frozen=True)
class Helper:
    """A helper named in copyToRoot / contents, with fakeNss's extra lines."""

    name: str
    extra_passwd_lines: tuple[str, ...] = field(default=())
    extra_group_lines: tuple[str, ...] = field(default=())


def default_closure(programs: Iterable[Path]) -> Iterable[Path]:
    """Every host path needed to run ``programs``: each symlink the loader meets, each file
    (the programs, their interpreter, their libraries), transitively."""
    from vmbuild.units.graph import Graph

    graph = Graph()
    todo = [name for p in programs for name in graph.path(str(p), str(p))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.units[name].refs)
    return [Path(name) for name in seen]


def _host_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise SpecError(f"{what} needs {path}, which this host lacks", "run scripts/setup")
    return path


def _add_program(tree: Tree, program: Path, closure: ClosureOf) -> None:
    for host in sorted(closure([_host_file(program, program.name)])):
        tree.add_file(str(host).lstrip("/"), host)


def _write(workdir: Path, rel: str, text: str) -> Path:
    path = workdir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def add_helper(
    tree: Tree, helper: Helper, workdir: Path, closure: ClosureOf = default_closure
) -> None:
    """Merge ``helper``'s files into ``tree``; synthetic files are written under ``workdir``."""
    own = workdir / f"helper-{helper.name}"
    own.mkdir(parents=True, exist_ok=True)
    os.chmod(own, 0o755)
    if helper.name == "usrBinEnv":
        _add_program(tree, Path("/usr/bin/env"), closure)
    elif helper.name == "binSh":
        _add_program(tree, Path("/usr/bin/bash"), closure)
        (own / "bin").mkdir(exist_ok=True)
        os.chmod(own / "bin", 0o755)
        os.symlink("/usr/bin/bash", own / "bin" / "sh")
        tree.add_root(own)
    elif helper.name == "caCertificates":
        tree.add_file("etc/ssl/certs/ca-certificates.crt", _host_file(CA_BUNDLE, "caCertificates"))
        for rel in ("etc/ssl/certs/ca-bundle.crt", "etc/pki/tls/certs/ca-bundle.crt"):
            link = own / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/etc/ssl/certs/ca-certificates.crt", link)
        for d in sorted(p for p in own.rglob("*") if p.is_dir() and not p.is_symlink()):
            os.chmod(d, 0o755)
        tree.add_root(own)
    elif helper.name == "fakeNss":
        _write(own, "etc/passwd", "\n".join((*PASSWD, *helper.extra_passwd_lines)) + "\n")
        _write(own, "etc/group", "\n".join((*GROUP, *helper.extra_group_lines)) + "\n")
        _write(own, "etc/nsswitch.conf", NSSWITCH)
        (own / "var" / "empty").mkdir(parents=True)
        for d in (own / "etc", own / "var", own / "var" / "empty"):
            os.chmod(d, 0o755)
        os.chmod(own / "var" / "empty", 0o555)
        tree.add_root(own)
    else:  # pragma: no cover - parse() only lets known names through
        raise SpecError(f"unknown helper {helper.name!r}", f"use one of {', '.join(HELPERS)}")


def parse_helper(value: object, where: str) -> Helper | None:
    """A helper from a copyToRoot/contents item, or None if the item is not one.

    Items: ``"fakeNss"`` or ``{ helper = "fakeNss", extraPasswdLines = [...],
    extraGroupLines = [...] }``.
    """
    if isinstance(value, str):
        return Helper(value) if value in HELPERS else None
    if not isinstance(value, dict) or "helper" not in value:
        return None
    name = value.get("helper")
    if name not in HELPERS:
        raise SpecError(f"{where}: unknown helper {name!r}", f"use one of {', '.join(HELPERS)}")
    extra = set(value) - {"helper", "extraPasswdLines", "extraGroupLines"}
    if extra or (name != "fakeNss" and len(value) > 1):
        raise SpecError(
            f"{where}: unknown argument {sorted(extra or set(value) - {'helper'})[0]!r} "
            f"for helper {name}",
            "only fakeNss takes extraPasswdLines and extraGroupLines",
        )

    def lines(key: str) -> tuple[str, ...]:
        got = value.get(key, [])
        if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
            raise SpecError(f"{where}: {key} must be a list of strings", "fix the spec")
        return tuple(got)

    return Helper(str(name), lines("extraPasswdLines"), lines("extraGroupLines"))
