"""Image references' rules, in one place: names, registry hosts, tags and digests.

A name is lowercase path components joined by ``/``, optionally after a registry host
(``host.example:5000/team/app``); a tag is up to 128 letters, digits, ``_ . -``, not
starting with ``.`` or ``-``; a digest is ``sha256:`` and 64 lowercase hex digits
(:data:`DIGEST_RE`, the one pattern every module checks digests with). Specs (``name``,
``tag``, ``finalImageName``, ``imageDigest``), prefetch's options and the registry's
reference parser (:mod:`vmbuild.registry.reference`, which adds where a name lives)
check with these.
"""

from __future__ import annotations

import re

from vmbuild.errors import SpecError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME_HINT = "use lowercase letters, digits and . _ - separators, / between path parts"


def looks_like_host(first: str) -> bool:
    """Whether a name's first ``/`` component is a registry host (not a path part)."""
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def check_name(name: str, where: str) -> str:
    """``name`` (``[host/]path``, no tag) if it is a valid image name."""
    host, _, rest = name.partition("/")
    path = rest if rest and looks_like_host(host) else name
    if not PATH_RE.match(path):
        raise SpecError(f"{where}: name {name!r} is not a valid image name", NAME_HINT)
    return name


def check_tag(tag: str, where: str) -> str:
    """``tag`` if it is a valid tag; ``where`` names it (``X: tag``, ``--image-tag``)."""
    if not TAG_RE.match(tag):
        raise SpecError(
            f"{where} {tag!r} is not a valid tag",
            "use up to 128 letters, digits, _ . -, not starting with . or -",
        )
    return tag


def check_pinned_digest(digest: str, where: str) -> str:
    """A digest the user gave (``imageDigest``, ``name@digest``): a SpecError if malformed.

    (A digest read from an image is checked by :func:`vmbuild.oci.digest.check_digest`.)
    """
    if not DIGEST_RE.match(digest):
        hint = "give sha256: followed by 64 lowercase hex digits"
        if digest.startswith("sha256:") and len(digest) == 71:
            hint = "the hex part must be lowercase hex digits"
        raise SpecError(f"{where} {digest!r} is not a valid digest", hint)
    return digest
