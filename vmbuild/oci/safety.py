"""Checks on untrusted tar member names and link targets (base images, pulled layers),
and opening a file inside an image layout directory without following links."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from pathlib import Path
from typing import NamedTuple

from vmbuild.errors import ImageError
from vmbuild.oci.layout import WHITEOUT

# No member name holds one: a newline splits a line of dpkg's ``.list`` (or of any tool's
# listing) in two, and no real file needs one.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def clean_name(name: str, where: str) -> str:
    """The member name without ``./`` or a trailing ``/``; rejects absolute names, ``..``
    and control characters."""
    if name.startswith("/"):
        raise ImageError(f"{where}: unsafe absolute path {name!r}", "the layer is malformed")
    if CONTROL_CHARS.search(name):
        raise ImageError(
            f"{where}: unsafe path {name!r} holds a control character", "the layer is malformed"
        )
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
    target = base[len(WHITEOUT) :]
    if target == "..":
        raise ImageError(
            f"{where}: unsafe whiteout {name!r} climbs out with '..'", "the layer is malformed"
        )
    if target in ("", "."):
        raise ImageError(f"{where}: whiteout {name!r} names no file", "the layer is malformed")
    return target


class MemberName(NamedTuple):
    """A layer member's name as :func:`check_member` checks it, in every layer."""

    name: str  # clean: no ``./``, no trailing ``/``; "" for the root itself
    hardlink_to: str | None = None  # a hard link's checked target


def check_member(
    name: str, where: str, *, symlink_to: str | None = None, hardlink_to: str | None = None
) -> MemberName:
    """The name checks every member of an untrusted layer gets, wherever it is scanned
    (a base layer: :mod:`vmbuild.oci.layercheck`; a pulled one as it streams:
    :mod:`vmbuild.registry.layerscan`): no absolute name, no ``..``, no symlink that
    climbs above the root, no hard link to outside the layer."""
    clean = clean_name(name, where)
    if not clean:
        return MemberName("")
    if symlink_to is not None:
        check_symlink(clean, symlink_to, where)
    if hardlink_to is not None:
        return MemberName(clean, check_hardlink(clean, hardlink_to, where))
    return MemberName(clean)


def open_beneath(root: Path, rel: str, where: str) -> int:
    """A read-only fd for the regular file ``rel`` inside the directory ``root``.

    No symlink is followed below ``root`` (``root`` itself is the user's path): each
    directory on the way is opened with ``O_NOFOLLOW``, and the file must be a regular
    file by ``lstat`` before it is opened and by ``fstat`` after.
    """
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ImageError(f"{where}: unsafe path {rel!r}", "the image is malformed")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            sub = _open_at(part, flags | os.O_DIRECTORY, fd, rel, where)
            os.close(fd)
            fd = sub
        st = _lstat_at(parts[-1], fd, rel, where)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(rel, where)
        leaf = _open_at(parts[-1], flags | os.O_NONBLOCK, fd, rel, where)
    finally:
        os.close(fd)
    now = os.fstat(leaf)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(leaf)
        raise _not_regular(rel, where)
    return leaf


def _not_regular(rel: str, where: str) -> ImageError:
    return ImageError(
        f"{where}: {rel} is a symbolic link or not a regular file",
        "an image layout holds its blobs as regular files; it may have been crafted",
    )


def _lstat_at(name: str, dir_fd: int, rel: str, where: str) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise ImageError(f"{where} lacks {rel}", "the image layout is incomplete") from None


def _open_at(name: str, flags: int, dir_fd: int, rel: str, where: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ImageError(f"{where} lacks {rel}", "the image layout is incomplete") from None
    except (NotADirectoryError, OSError) as exc:
        if isinstance(exc, NotADirectoryError) or exc.errno == errno.ELOOP:
            raise _not_regular(rel, where) from None
        raise ImageError(f"{where}: cannot open {rel} ({exc.strerror})", "check the path") from None
