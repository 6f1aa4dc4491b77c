"""An image's name and tag as a docker-archive's ``RepoTags`` and an OCI ref name hold them.

A name is lowercase path components joined by ``/``, optionally after a registry host
(``host.example:5000/team/app``); a tag is up to 128 letters, digits, ``_ . -``, not
starting with ``.`` or ``-``. Specs (``name``, ``tag``, ``finalImageName``) and prefetch's
``--final-image-name`` are checked here; where a name is fetched from, and its digest,
are the registry's business (:mod:`vmbuild.registry.reference`).
"""

from __future__ import annotations

import re

from vmbuild.errors import SpecError

NAME_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str, where: str) -> str:
    host, _, rest = name.partition("/")
    path = rest if rest and ("." in host or ":" in host or host == "localhost") else name
    if not NAME_RE.match(path):
        raise SpecError(
            f"{where}: name {name!r} is not a valid image name",
            "use lowercase letters, digits and . _ - separators, / between path parts",
        )
    return name


def check_tag(tag: str, where: str) -> str:
    if not TAG_RE.match(tag):
        raise SpecError(
            f"{where}: tag {tag!r} is not a valid tag",
            "use up to 128 letters, digits, _ . -, not starting with . or -",
        )
    return tag
