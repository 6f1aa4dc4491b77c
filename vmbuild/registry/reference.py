"""Image references: ``[host[:port]/]path[:tag][@digest]`` and where they live.

A name without a registry host is on Docker Hub, and a single-component Docker Hub name
is under ``library/`` (``debian`` -> ``registry-1.docker.io`` ``library/debian``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmbuild.errors import SpecError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True)
class Repository:
    """A repository on a registry: ``host`` as written (``docker.io`` for Docker Hub)."""

    host: str
    path: str

    @property
    def api_host(self) -> str:
        """The host:port to talk to."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def hostname(self) -> str:
        host = self.api_host
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def is_local(self) -> bool:
        return self.hostname in LOCAL_HOSTS

    def __str__(self) -> str:
        return self.path if self.host == DOCKER_HUB else f"{self.host}/{self.path}"


def _looks_like_host(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def parse_repository(name: str, where: str = "image name") -> Repository:
    """``name`` (no tag, no digest) -> the registry host and repository path."""
    if not name or name != name.strip():
        raise SpecError(f"{where} {name!r} is not a valid image name", "give e.g. nixos/nix")
    first, sep, rest = name.partition("/")
    if sep and _looks_like_host(first):
        host, path = first, rest
        if not HOST_RE.match(host):
            raise SpecError(
                f"{where} {name!r}: {host!r} is not a valid registry host",
                "use host or host:port, e.g. registry.example.com:5000/team/app",
            )
        if host.lower() in _HUB_ALIASES:
            host = DOCKER_HUB
    else:
        host, path = DOCKER_HUB, name
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not PATH_RE.match(path):
        hint = "use lowercase letters, digits and . _ - separators, / between path parts"
        if "@" in path or ":" in path:
            hint = "give the name without a tag or digest (they have their own arguments)"
        raise SpecError(f"{where} {name!r} is not a valid image name", hint)
    return Repository(host, path)


def printable(text: str) -> str:
    """``text`` a server or an image chose, safe to print: control characters (a
    terminal's escape sequences among them) become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def check_digest(digest: str, where: str = "imageDigest") -> str:
    if not DIGEST_RE.match(digest):
        hint = "give sha256: followed by 64 lowercase hex digits"
        if digest.startswith("sha256:") and len(digest) == 71:
            hint = "the hex part must be lowercase hex digits"
        raise SpecError(f"{where} {digest!r} is not a valid digest", hint)
    return digest


def check_tag(tag: str, where: str = "tag") -> str:
    if not TAG_RE.match(tag):
        raise SpecError(
            f"{where} {tag!r} is not a valid tag",
            "use up to 128 letters, digits, _ . -, not starting with . or -",
        )
    return tag


@dataclass(frozen=True)
class Reference:
    """A repository plus a tag or a digest (``reference`` is what the API path takes)."""

    repo: Repository
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        ref = self.digest or self.tag
        assert ref is not None
        return ref

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repo}@{self.digest}"
        return f"{self.repo}:{self.tag}"


def parse_reference(text: str, where: str = "image") -> Reference:
    """``name[:tag][@digest]``; the tag defaults to ``latest`` when there is no digest."""
    name, _, digest = text.partition("@")
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        check_tag(tag, f"{where} tag")
    repo = parse_repository(name, where)
    if digest:
        check_digest(digest, f"{where} digest")
        return Reference(repo, tag, digest)
    return Reference(repo, tag or "latest")


def parse_docker_url(text: str) -> Reference:
    """``docker://HOST/NAME[:TAG]`` (push destinations)."""
    if not text.startswith("docker://"):
        raise SpecError(
            f"destination {text!r} is not a docker:// reference",
            "give e.g. docker://registry.example.com/team/app:1.0",
        )
    return parse_reference(text.removeprefix("docker://"), "destination")
