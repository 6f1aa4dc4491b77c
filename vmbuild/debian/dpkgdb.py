"""The dpkg database of an image's packages, as ``dpkg --unpack`` records it:
``var/lib/dpkg/status`` (each package's control paragraph with its Status and
Conffiles) and ``info/<pkg>.list`` / ``.md5sums`` (``<pkg>:<arch>`` for Multi-Arch:
same). Paths are the packages' own (``/lib/...``), as dpkg lists them on merged-/usr."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path

from debian.deb822 import Deb822

STATUS = "install ok installed"
UNPACKED = "install ok unpacked"  # for ``dpkg --configure -a`` to configure (configure = true)


@functools.lru_cache(maxsize=4096)
def control_of(unpacked: Path) -> Deb822:
    """The package's control paragraph, parsed once (an unpacked package, named by its
    .deb's SHA256, never changes; do not modify what this returns)."""
    return Deb822((unpacked / "control" / "control").read_text(errors="replace"))


def info_name(control: Deb822) -> str:
    name = str(control["Package"])
    if control.get("Multi-Arch", "") == "same":
        return f"{name}:{control.get('Architecture', '')}"
    return name


def list_of(paths: Iterable[str]) -> bytes:
    """``info/<pkg>.list``: the package's paths as shipped (``path`` of each member)."""
    lines = ["/.", *("/" + p for p in paths)]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _md5s(unpacked: Path) -> dict[str, str]:
    path = unpacked / "control" / "md5sums"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            md5, _, name = line.partition("  ")
            if name:
                out["/" + name.lstrip("/")] = md5
    return out


def status_paragraph(unpacked: Path, status: str = STATUS) -> str:
    control = control_of(unpacked)
    out = Deb822()
    for key, value in control.items():
        out[key] = value
        if key == "Package":
            out["Status"] = status
    conffiles = unpacked / "control" / "conffiles"
    if conffiles.is_file():
        sums = _md5s(unpacked)
        names = [n.strip() for n in conffiles.read_text(errors="replace").splitlines() if n.strip()]
        if names:
            out["Conffiles"] = "\n" + "\n".join(f" {n} {sums.get(n, 'newconffile')}" for n in names)
    return str(out.dump()).rstrip("\n") + "\n"


def status_file(
    unpacked: Iterable[Path],
    status: str = STATUS,
    paragraph: Callable[[Path, str], str] = status_paragraph,
) -> bytes:
    """The status file of the packages (``paragraph`` gives each one's paragraph)."""
    paras = sorted((str(control_of(u)["Package"]), paragraph(u, status)) for u in unpacked)
    return "\n".join(p for _, p in paras).encode("utf-8", "surrogateescape")
