"""Docker credential helpers: fake ``docker-credential-*`` scripts on $PATH, docker's
order (credHelpers, then credsStore, then auths), their failures as one line, and an
identity token turned into a bearer token by a token server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.httpstub import Handler
from vmbuild.errors import RegistryError
from vmbuild.registry import credhelper
from vmbuild.registry.auth import Credentials, load_credentials
from vmbuild.registry.client import Client

HOST = "registry.example:5000"


class Helpers:
    """Writes ``docker-credential-<name>`` scripts into a directory on $PATH."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir

    def add(self, name: str, body: str) -> Path:
        """A helper whose ``get`` runs ``body`` (sh) with the server address in $server;
        every address it is asked about is appended to ``<name>.asked``."""
        script = self.bin / f"docker-credential-{name}"
        script.write_text(
            "#!/bin/sh\n"
            '[ "$1" = get ] || exit 64\n'
            "server=$(cat)\n"
            f'printf "%s\\n" "$server" >> "{self.bin}/{name}.asked"\n'
            f"{body}\n"
        )
        script.chmod(0o755)
        return script

    def answering(self, name: str, user: str, secret: str) -> Path:
        answer = json.dumps({"ServerURL": "x", "Username": user, "Secret": secret})
        return self.add(name, f"printf '%s' '{answer}'")

    def asked(self, name: str) -> list[str]:
        f = self.bin / f"{name}.asked"
        return f.read_text().splitlines() if f.exists() else []


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Helpers:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return Helpers(bin_dir)


def config(tmp_path: Path, **data: object) -> Path:
    f = tmp_path / "config.json"
    f.write_text(json.dumps(data))
    return f


def basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def one_line(exc: pytest.ExceptionInfo[RegistryError], *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and all(p in text for p in parts), text
    return text


def test_cred_helpers_win_over_creds_store_and_auths(helpers: Helpers, tmp_path: Path) -> None:
    helpers.answering("one", "alice", "pw1")
    helpers.answering("store", "bob", "pw2")
    f = config(
        tmp_path,
        credHelpers={HOST: "one"},
        credsStore="store",
        auths={HOST: basic("file", "x"), "other.example": basic("file", "y")},
    )
    got = load_credentials(HOST, "team/app", f)
    assert got == Credentials("alice", "pw1") and got.source == "docker-credential-one"
    assert helpers.asked("one") == [HOST] and helpers.asked("store") == []
    # credsStore for every other registry; the auths entry is not used (docker's order).
    got = load_credentials("other.example", "a/b", f)
    assert got == Credentials("bob", "pw2") and got.source == "docker-credential-store"
    assert helpers.asked("store") == ["other.example"]


def test_auths_when_no_helper_for_the_host(helpers: Helpers, tmp_path: Path) -> None:
    helpers.answering("one", "alice", "pw1")
    f = config(
        tmp_path,
        credHelpers={HOST: "one"},
        auths={"other.example": basic("file", "y"), "tok.example": {"identitytoken": "RT"}},
    )
    got = load_credentials("other.example", "a/b", f)
    assert got == Credentials("file", "y") and got.source == ""
    token = load_credentials("tok.example", "a/b", f)
    assert token is not None and token.identity_token == "RT"
    assert helpers.asked("one") == []


def test_docker_hub_is_asked_by_its_old_url(helpers: Helpers, tmp_path: Path) -> None:
    helpers.answering("store", "hubuser", "hubpw")
    helpers.answering("hub", "hub2", "pw")
    f = config(tmp_path, credsStore="store")
    assert load_credentials("docker.io", "library/debian", f) == Credentials("hubuser", "hubpw")
    assert helpers.asked("store") == ["https://index.docker.io/v1/"]
    f = config(tmp_path, credsStore="store", credHelpers={"docker.io": "hub"})
    assert load_credentials("docker.io", "library/debian", f) == Credentials("hub2", "pw")


def test_not_found_is_anonymous(helpers: Helpers, tmp_path: Path) -> None:
    helpers.add("store", "echo 'credentials not found in native keychain'; exit 1")
    helpers.answering("empty", "", "")
    f = config(tmp_path, credsStore="store", auths={HOST: basic("stale", "x")})
    assert load_credentials(HOST, "a/b", f) is None
    assert helpers.asked("store") == [HOST]
    assert load_credentials(HOST, "a/b", config(tmp_path, credsStore="empty")) is None


def test_missing_helper_is_one_line(helpers: Helpers, tmp_path: Path) -> None:
    f = config(tmp_path, credHelpers={HOST: "nope"})
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", f)
    one_line(err, "docker-credential-nope", "is not installed", f'credHelpers["{HOST}"]', str(f))
    f = config(tmp_path, credsStore="../evil")
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", f)
    one_line(err, "not a credential helper name")


def test_helper_failures_are_one_line(
    helpers: Helpers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers.add("bad", "echo 'not json, secret=hunter2'")
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", config(tmp_path, credsStore="bad"))
    text = one_line(err, "docker-credential-bad sent no valid credentials for " + HOST)
    assert "hunter2" not in text
    helpers.add("nosecret", 'echo \'{"Username": "u"}\'')
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", config(tmp_path, credsStore="nosecret"))
    one_line(err, "sent no valid credentials")
    helpers.add("locked", "echo 'first line' >&2; echo 'gpg: decryption failed' >&2; exit 2")
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", config(tmp_path, credsStore="locked"))
    one_line(err, "docker-credential-locked failed for", "(status 2): gpg: decryption failed")
    helpers.add("slow", "exec sleep 10")
    monkeypatch.setattr(credhelper, "TIMEOUT", 0.2)
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", config(tmp_path, credsStore="slow"))
    one_line(err, "docker-credential-slow did not answer")
    script = helpers.answering("noexec", "u", "p")
    script.chmod(0o644)
    with pytest.raises(RegistryError) as err:
        load_credentials(HOST, "a/b", config(tmp_path, credsStore="noexec"))
    one_line(err, "docker-credential-noexec")


class TokenRegistry(Handler):
    """A registry wanting a bearer token from its own /token, which takes only OAuth2
    refresh-token POSTs with the refresh token RT."""

    scheme: ClassVar[str] = "Bearer"
    forms: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        type(self).forms.append(form)
        ok = (
            self.path == "/token"
            and self.headers.get("Content-Type") == "application/x-www-form-urlencoded"
            and form.get("grant_type") == ["refresh_token"]
            and form.get("refresh_token") == ["RT"]
        )
        if not ok:
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}')
        return self._send(200, json.dumps({"access_token": "AT", "expires_in": 300}).encode())

    def do_GET(self) -> None:
        if self.headers.get("Authorization") == "Bearer AT":
            return self._send(200, b"{}")
        host = self.headers["Host"]
        challenge = (
            f'Bearer realm="http://{host}/token",service="svc"'
            if type(self).scheme == "Bearer"
            else 'Basic realm="r"'
        )
        return self._send(401, b"{}", {"WWW-Authenticate": challenge})


@pytest.fixture
def token_registry() -> Iterator[str]:
    TokenRegistry.forms = []
    TokenRegistry.scheme = "Bearer"
    srv = ThreadingHTTPServer(("127.0.0.1", 0), TokenRegistry)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_identity_token_from_a_helper(
    helpers: Helpers, tmp_path: Path, token_registry: str
) -> None:
    helpers.answering("tok", "<token>", "RT")
    creds = load_credentials(token_registry, "x/y", config(tmp_path, credsStore="tok"))
    assert creds is not None and creds.identity_token == "RT"
    client = Client(token_registry, credentials=creds)
    try:
        resp = client.request("GET", "/v2/", scope="repository:x/y:pull", what="t")
        assert resp.read() == b"{}"
    finally:
        client.close()
    assert TokenRegistry.forms == [
        {
            "grant_type": ["refresh_token"],
            "client_id": ["vmbuild"],
            "service": ["svc"],
            "scope": ["repository:x/y:pull"],
            "refresh_token": ["RT"],
        }
    ]
    stale = Client(
        token_registry, credentials=Credentials("<token>", "OLD", "docker-credential-tok")
    )
    try:
        with pytest.raises(RegistryError) as err:
            stale.request("GET", "/v2/", scope="repository:x/y:pull", what="t")
    finally:
        stale.close()
    text = one_line(err, "refused the identity token from docker-credential-tok", "log in")
    assert "OLD" not in text


def test_identity_token_cannot_do_basic_auth(token_registry: str) -> None:
    TokenRegistry.scheme = "Basic"
    client = Client(
        token_registry, credentials=Credentials("<token>", "RT", "docker-credential-tok")
    )
    try:
        with pytest.raises(RegistryError) as err:
            client.request("GET", "/v2/", scope="repository:x/y:pull", what="t")
    finally:
        client.close()
    one_line(err, "wants basic auth, which cannot use the identity token", "user name and password")
