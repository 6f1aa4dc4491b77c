"""Checks on untrusted tar member names and link targets (base images, pulled layers)."""

from __future__ import annotations

import posixpath

from vmbuild.errors import ImageError


def clean_name(name: str, where: str) -> str:
    """The member name without ``./`` or a trailing ``/``; rejects absolute names and ``..``."""
    if name.startswith("/") or "\0" in name:
        raise ImageError(f"{where}: unsafe absolute path {name!r}", "the layer is malformed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(
            f"{where}: unsafe path {name!r} climbs out with '..'", "the layer is malformed"
        )
    return "/".join(parts)


def check_symlink(name: str, target: str, where: str) -> None:
    """A relative symlink must not climb above the image's root."""
    if target.startswith("/"):
        return  # absolute links resolve inside the container's root
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ImageError(
            f"{where}: symlink {name} -> {target} points outside the image",
            "the layer is malformed",
        )


def check_hardlink(name: str, target: str, where: str) -> str:
    return clean_name(target, f"{where}: hard link {name}")


def whiteout_target(name: str, base: str, where: str) -> str:
    """The name a ``.wh.NAME`` member ``name`` hides, checked as a member name would be.

    Its directory component was checked with the member's name; the hidden name itself must
    be a real one (not empty, ``.`` or ``..``, which would hide the directory or its parent).
    """
    target = base[len(".wh.") :]
    if target == "..":
        raise ImageError(
            f"{where}: unsafe whiteout {name!r} climbs out with '..'", "the layer is malformed"
        )
    if target in ("", "."):
        raise ImageError(f"{where}: whiteout {name!r} names no file", "the layer is malformed")
    return target
