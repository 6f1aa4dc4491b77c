"""Image references: ``[host[:port]/]path[:tag][@digest]`` and where they live.

A name without a registry host is on Docker Hub, and a single-component Docker Hub name
is under ``library/`` (``debian`` -> ``registry-1.docker.io`` ``library/debian``).
"""

from __future__ import annotations

from typing import NamedTuple

from vmbuild.errors import SpecError
from vmbuild.oci.names import (
    HOST_RE,
    NAME_HINT,
    PATH_RE,
    check_pinned_digest,
    check_tag,
    looks_like_host,
)

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class Repository(NamedTuple):
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


def parse_repository(name: str, where: str = "image name") -> Repository:
    """``name`` (no tag, no digest) -> the registry host and repository path."""
    if not name or name != name.strip():
        raise SpecError(f"{where} {name!r} is not a valid image name", "give e.g. nixos/nix")
    first, sep, rest = name.partition("/")
    if sep and looks_like_host(first):
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
        hint = NAME_HINT
        if "@" in path or ":" in path:
            hint = "give the name without a tag or digest (they have their own arguments)"
        raise SpecError(f"{where} {name!r} is not a valid image name", hint)
    return Repository(host, path)


class Reference(NamedTuple):
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
        check_pinned_digest(digest, f"{where} digest")
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
