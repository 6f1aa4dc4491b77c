"""The dpkg database of an image's packages, as ``dpkg --unpack`` records it:
``var/lib/dpkg/status`` (each package's control paragraph with its Status and
Conffiles) and ``info/<pkg>.list`` / ``.md5sums`` (``<pkg>:<arch>`` for Multi-Arch:
same). Paths are the packages' own (``/lib/...``), as dpkg lists them on merged-/usr."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from debian.deb822 import Deb822

STATUS = "install ok installed"
UNPACKED = "install ok unpacked"  # for ``dpkg --configure -a`` to configure (configure = true)
FROM_CONTROL = ("control", "conffiles", "md5sums")  # the control files :func:`facts` reads


def info_name(name: str, multi_arch: str, architecture: str) -> str:
    """The package's name in ``info/`` (``NAME.list``...): ``NAME:ARCH`` for Multi-Arch:
    same. Given the index's (the lock's) name and architecture, which the package's
    control file was checked to repeat (:func:`vmbuild.debian.debfile.check_control`)."""
    return f"{name}:{architecture}" if multi_arch == "same" else name


def list_of(paths: Iterable[str]) -> bytes:
    """``info/<pkg>.list``: the package's paths as shipped (``path`` of each member)."""
    lines = ["/.", *("/" + p for p in paths)]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _md5s(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        md5, _, name = line.partition("  ")
        if name:
            out["/" + name.lstrip("/")] = md5
    return out


def status_paragraph(control: Deb822, conffiles: str, md5sums: str, status: str = STATUS) -> str:
    """The package's paragraph of ``var/lib/dpkg/status``: its control fields with
    ``Status`` after ``Package``, and its ``Conffiles`` with their md5sums."""
    out = Deb822()
    for key, value in control.items():
        out[key] = value
        if key == "Package":
            out["Status"] = status
    names = [n.strip() for n in conffiles.splitlines() if n.strip()]
    if names:
        sums = _md5s(md5sums)
        out["Conffiles"] = "\n" + "\n".join(f" {n} {sums.get(n, 'newconffile')}" for n in names)
    return str(out.dump()).rstrip("\n") + "\n"


def facts(texts: dict[str, str]) -> dict[str, Any]:
    """What an image's dpkg database and the build need of a package, from its control
    files (``texts``: name -> text, those of :data:`FROM_CONTROL` it has), made once
    when the package is read: its name, ``info`` name, Pre-Depends and status
    paragraphs."""
    control = Deb822(texts["control"])
    conffiles, md5sums = texts.get("conffiles", ""), texts.get("md5sums", "")
    return {
        "package": str(control["Package"]),
        "info": info_name(
            str(control["Package"]), control.get("Multi-Arch", ""), control.get("Architecture", "")
        ),
        "pre_depends": str(control.get("Pre-Depends", "")),
        "status": {s: status_paragraph(control, conffiles, md5sums, s) for s in (STATUS, UNPACKED)},
    }


def status_file(paragraphs: Iterable[tuple[str, str]]) -> bytes:
    """The status file of packages given as (name, paragraph)."""
    return "\n".join(p for _, p in sorted(paragraphs)).encode("utf-8", "surrogateescape")
