"""Registry credentials and authentication challenges.

Credentials come from ``$REGISTRY_AUTH_FILE``, else ``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json`` (the ``auths`` table: ``auth`` = base64 ``user:password``, or
``username`` and ``password``). Credential helpers are not run. A ``WWW-Authenticate``
challenge is either ``Basic`` (send the credentials) or ``Bearer`` (fetch a token from the
realm, with the credentials if there are any, for the scopes the challenge names).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vmbuild.errors import RegistryError

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer" (lowercase)
    params: dict[str, str]


def auth_file() -> Path:
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return Path(explicit)
    docker_config = os.environ.get("DOCKER_CONFIG")
    base = Path(docker_config) if docker_config else Path.home() / ".docker"
    return base / "config.json"


def _candidates(host: str, path: str) -> list[str]:
    hosts = list(_HUB_KEYS) if host in ("docker.io", "registry-1.docker.io") else [host]
    keys: list[str] = []
    parts = path.split("/")
    for h in hosts:
        # Most specific first: host/namespace/repo, ..., host (podman allows namespaces).
        keys += [f"{h}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
        keys += [h, f"https://{h}", f"http://{h}", f"https://{h}/v1/", f"https://{h}/v2/"]
    return keys


def load_credentials(host: str, path: str, file: Path | None = None) -> Credentials | None:
    """The credentials for repository ``path`` on ``host``, or None (anonymous)."""
    file = file or auth_file()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryError(
            f"cannot read registry credentials from {file}: {exc}",
            "fix the file or point $REGISTRY_AUTH_FILE at a valid one",
        ) from exc
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in _candidates(host, path):
        entry = auths.get(key)
        if isinstance(entry, dict):
            return _entry_credentials(entry, key, file)
    return None


def _entry_credentials(entry: dict[str, object], key: str, file: Path) -> Credentials | None:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return Credentials(user, password)
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise RegistryError(
            f"{file}: the auth entry for {key} is not base64 of user:password",
            "log in again or fix the file",
        ) from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise RegistryError(f"{file}: the auth entry for {key} lacks a ':'", "log in again")
    return Credentials(user, password)


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header (registries send one)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def scopes(*parts: str) -> list[str]:
    """Scope strings split on spaces, duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for part in parts:
        for s in part.split():
            seen.setdefault(s, None)
    return list(seen)


def token_from_response(body: bytes, realm: str) -> str:
    try:
        data = json.loads(body)
        token = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"token server {realm} sent no JSON", "check the registry") from exc
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token server {realm} sent no token", "check the registry")
    return token
