"""Docker credential helpers: which one a registry uses, and asking it.

``docker login`` with a credential store configured keeps no password in config.json; it
names a helper program instead (``credHelpers``: registry -> helper, ``credsStore``: one
helper for every registry). Without asking the helper we would pull anonymously where
docker and skopeo are logged in. The protocol: run ``docker-credential-<name> get``, write
the server address to its stdin, read ``{"ServerURL", "Username", "Secret"}`` from its
stdout; a user name of ``<token>`` means the secret is an identity (OAuth2 refresh) token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from vmbuild.errors import RegistryError, StepFailed, ToolMissing

HUB_SERVER = "https://index.docker.io/v1/"
HUB_KEYS = (HUB_SERVER, "index.docker.io", "docker.io", "registry-1.docker.io")
TOKEN_USER = "<token>"
TIMEOUT = 120.0  # a helper may wait for a keyring unlock or a gpg passphrase
_NOT_FOUND = "credentials not found"  # what docker-credential-helpers say for "no login"


def server_address(host: str) -> str:
    """What a helper is asked about: Docker Hub's historic URL, else the host as written."""
    return HUB_SERVER if host in HUB_KEYS else host


def configured_helper(config: Mapping[str, object], host: str) -> tuple[str, str] | None:
    """(helper name, where it is configured) for ``host``, or None: a ``credHelpers``
    entry for the host wins, else ``credsStore`` (docker's order)."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in HUB_KEYS if host in HUB_KEYS else (host,):
            name = helpers.get(key)
            if isinstance(name, str) and name:
                return name, f'credHelpers["{key}"]'
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return store, "credsStore"
    return None


def get(name: str, host: str, where: str, file: Path) -> tuple[str, str] | None:
    """(username, secret) from helper ``name`` for ``host``, or None if it has no login.

    ``where`` and ``file`` only name the configuration in error messages."""
    from vmbuild.run import run  # here: a push without a helper needs no subprocess module

    program = f"docker-credential-{name}"
    server = server_address(host)
    if "/" in name or name.startswith("."):
        raise RegistryError(
            f"{file}: {where} names {name!r}, which is not a credential helper name",
            "give the part after docker-credential-, e.g. pass or secretservice",
        )
    try:
        proc = run(
            [program, "get"], input=server.encode(), capture=True, check=False, timeout=TIMEOUT
        )
    except ToolMissing as exc:
        raise RegistryError(
            f"credential helper {program} ({where} in {file}) is not installed",
            f"install {program} on $PATH, or remove {where} from {file}",
        ) from exc
    except StepFailed as exc:
        raise RegistryError(
            f"credential helper {program} did not answer for {server} within {TIMEOUT:.0f} s",
            f"run `echo {server} | {program} get` to see what it waits for",
        ) from exc
    except OSError as exc:
        raise RegistryError(
            f"cannot run credential helper {program}: {exc}",
            f"make {program} executable, or remove {where} from {file}",
        ) from exc
    out = proc.stdout.decode(errors="replace").strip()
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        if _NOT_FOUND in out.lower() or _NOT_FOUND in err.lower():
            return None
        last = (err or out).splitlines()[-1:] or ["no message"]
        raise RegistryError(
            f"credential helper {program} failed for {server} (status {proc.returncode}): "
            + last[0].strip(),
            f"run `echo {server} | {program} get` to see why, or log in again",
        )
    return _parse(out, program, server)


def _parse(out: str, program: str, server: str) -> tuple[str, str] | None:
    try:
        data = json.loads(out)
    except ValueError:
        data = None
    user = data.get("Username") if isinstance(data, dict) else None
    secret = data.get("Secret") if isinstance(data, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise RegistryError(
            f"credential helper {program} sent no valid credentials for {server} "
            '(want JSON with "Username" and "Secret")',
            f"run `echo {server} | {program} get` to see what it prints, or log in again",
        )
    if not user and not secret:
        return None
    return user, secret
