"""Registry credentials and authentication challenges.

Credentials come from ``$REGISTRY_AUTH_FILE``, else ``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``, in docker's order: a credential helper configured for the host
(``credHelpers``, else ``credsStore``) is asked and is the only source, so a helper without
a login means anonymous even if ``auths`` has an old entry; with no helper, the ``auths``
table (``auth`` = base64 ``user:password``, or ``username`` and ``password``, or an
``identitytoken``). A ``WWW-Authenticate`` challenge is either ``Basic`` (send the
credentials) or ``Bearer`` (fetch a token from the realm, with the credentials if there are
any, for the scopes the challenge names). An identity token only works with ``Bearer``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from vmbuild.errors import RegistryError
from vmbuild.registry import credhelper
from vmbuild.registry.credhelper import HUB_KEYS as _HUB_KEYS
from vmbuild.registry.credhelper import TOKEN_USER

CLIENT_ID = "vmbuild"  # the OAuth2 client_id sent with an identity token

_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


class Credentials:
    """A login: a user and password, or (user ``<token>``) an identity token; ``source``
    says where it came from ("docker-credential-pass"; "": the file) and is not part of
    its equality. (A plain class: a dataclass costs a push's start-up milliseconds.)"""

    __slots__ = ("password", "source", "username")

    def __init__(self, username: str, password: str, source: str = "") -> None:
        self.username = username
        self.password = password
        self.source = source

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.username, self.password) == (other.username, other.password)

    def __hash__(self) -> int:
        return hash((self.username, self.password))

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, <secret>, {self.source!r})"

    @property
    def identity_token(self) -> str | None:
        """The OAuth2 refresh token docker keeps for some logins (Bearer auth only)."""
        return self.password if self.username == TOKEN_USER else None

    def describe(self) -> str:
        """Which login this is, for messages (never the secret)."""
        what = (
            "the identity token" if self.identity_token else f"the credentials of {self.username!r}"
        )
        return f"{what} from {self.source}" if self.source else what

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class Challenge(NamedTuple):
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
    if not isinstance(data, dict):
        return None
    helper = credhelper.configured_helper(data, host)
    if helper is not None:
        name, where = helper
        got = credhelper.get(name, host, where, file)
        if got is None:
            return None
        return Credentials(got[0], got[1], f"docker-credential-{name}")
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    for key in _candidates(host, path):
        entry = auths.get(key)
        if isinstance(entry, dict):
            return _entry_credentials(entry, key, file)
    return None


def _entry_credentials(entry: dict[str, object], key: str, file: Path) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(TOKEN_USER, token)
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


def token_request(
    challenge: Challenge, scope: str, realm: str, credentials: Credentials | None
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, url, headers, body) asking ``realm`` for a token: a GET with the
    credentials as basic auth, or with an identity token docker's OAuth2 form POST."""
    service = challenge.params.get("service")
    wanted = scopes(challenge.params.get("scope", ""), scope)
    headers: dict[str, str] = {}
    refresh = credentials.identity_token if credentials else None
    if refresh:
        # Scopes space-separated in one field, as OAuth2 has them.
        fields = [("grant_type", "refresh_token"), ("client_id", CLIENT_ID)]
        fields += [("service", service)] if service is not None else []
        fields += [("scope", " ".join(wanted))] if wanted else []
        fields += [("refresh_token", refresh)]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return "POST", realm, headers, urllib.parse.urlencode(fields).encode()
    query = [("service", service)] if service is not None else []
    query += [("scope", s) for s in wanted]
    sep = "&" if urllib.parse.urlsplit(realm).query else "?"
    if credentials:
        headers["Authorization"] = credentials.basic_header()
    return "GET", realm + sep + urllib.parse.urlencode(query), headers, None


def token_from_response(body: bytes, realm: str) -> str:
    try:
        data = json.loads(body)
        token = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError) as exc:
        raise RegistryError(f"token server {realm} sent no JSON", "check the registry") from exc
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token server {realm} sent no token", "check the registry")
    return token
