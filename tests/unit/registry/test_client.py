"""The HTTP client and blob downloads against a small fake registry on 127.0.0.1:
credentials, the bearer-token flow, plain HTTP fallback, resuming a dropped download."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.httpstub import Handler
from vmbuild import cache
from vmbuild.errors import RegistryError
from vmbuild.registry.auth import Credentials, load_credentials, parse_challenge
from vmbuild.registry.blobs import Downloader, get_many, store_path
from vmbuild.registry.client import Client
from vmbuild.registry.inflate import SizeGuessWrong, count_plain
from vmbuild.registry.manifest import Descriptor
from vmbuild.registry.progress import Silent
from vmbuild.registry.reference import Repository

PLAIN = b"".join(bytes([i % 251]) * 1000 for i in range(3000))
# Two gzip members, as some tools write.
BLOB = gzip.compress(PLAIN[:1_000_000], mtime=0) + gzip.compress(PLAIN[1_000_000:], mtime=0)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
DIFF_ID = "sha256:" + hashlib.sha256(PLAIN).hexdigest()


class Fake(Handler):
    requests: ClassVar[list[tuple[str, str, str]]] = []
    drop_first = True
    drop_always = False
    bearer = False

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        type(self).requests.append((self.path, self.headers.get("Range", ""), auth))
        host = self.headers["Host"]
        if self.path.startswith("/token"):
            good = "Basic " + base64.b64encode(b"bob:pw").decode()
            if auth != good:
                return self._send(401, b'{"errors":[{"code":"DENIED","message":"bad login"}]}')
            return self._send(200, json.dumps({"token": "T0K"}).encode())
        if type(self).bearer and auth != "Bearer T0K":
            challenge = (
                f'Bearer realm="http://{host}/token",service="fake",scope="repository:x/y:pull"'
            )
            return self._send(401, b"{}", {"WWW-Authenticate": challenge})
        if self.path == "/v2/":
            return self._send(200, b"{}")
        if self.path == f"/v2/x/y/blobs/{DIGEST}":
            rng = self.headers.get("Range")
            if rng and not type(self).drop_always:
                start = int(rng.split("=")[1].rstrip("-"))
                part = BLOB[start:]
                return self._send(206, part, {"Content-Range": f"bytes {start}-{len(BLOB) - 1}"})
            if type(self).drop_first:
                type(self).drop_first = type(self).drop_always
                self.send_response(200)
                self.send_header("Content-Length", str(len(BLOB)))
                self.end_headers()
                self.wfile.write(BLOB[: len(BLOB) // 3])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            return self._send(200, BLOB)
        return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("vmbuild.registry.blobs.BACKOFF", 0.01)
    Fake.requests = []
    Fake.drop_first = True
    Fake.drop_always = False
    Fake.bearer = False
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_resume_after_drop_and_cache(server: str, tmp_path: Path) -> None:
    client = Client(server)
    down = Downloader(client, Repository(server, "x/y"), Silent(), "t")
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", DIGEST, len(BLOB))
    try:
        guessed = down.get(desc, True)
        assert guessed.diff_id == "" and guessed.compression == "gzip"  # checked when written
        # Two gzip members: the trailer tells the size of the last one only.
        assert guessed.size == len(PLAIN) - 1_000_000 and not guessed.size_exact
        with pytest.raises(SizeGuessWrong):
            guessed.copy_to(io.BytesIO())
        assert count_plain(guessed.path, "gzip") == len(PLAIN)
        got = dataclasses.replace(guessed, plain_size=len(PLAIN), size_exact=True)
        wrong = dataclasses.replace(got, diff_id="sha256:" + "0" * 64, check_diff=True)
        with pytest.raises(RegistryError, match="unpacks to " + DIFF_ID):
            wrong.copy_to(io.BytesIO())
        sink = io.BytesIO()
        dataclasses.replace(got, diff_id=DIFF_ID, check_diff=True).copy_to(sink)
        assert sink.getvalue() == PLAIN
        assert store_path(DIGEST).read_bytes() == BLOB
        ranges = [r for p, r, _ in Fake.requests if "blobs" in p]
        assert ranges[0] == "" and ranges[1].startswith("bytes=") and len(ranges) == 2
        assert client.base().startswith("http://")  # no TLS here: plain HTTP to localhost
        # Cached: not fetched again, still verified.
        before = len(Fake.requests)
        again = get_many(down, [desc, desc], True)
        assert again[DIGEST].diff_id == DIFF_ID and len(Fake.requests) == before
        # A corrupt cache entry is fetched anew.
        store_path(DIGEST).write_bytes(BLOB[:-1] + bytes([BLOB[-1] ^ 1]))
        with pytest.raises(RegistryError, match="changed on disk; it was removed"):
            again[DIGEST].copy_to(io.BytesIO())
        assert not store_path(DIGEST).exists()
        assert down.get(desc, False).path.read_bytes() == BLOB
        assert len(Fake.requests) == before + 1
    finally:
        client.close()


def test_unknown_blob_is_one_line(server: str) -> None:
    client = Client(server)
    down = Downloader(client, Repository(server, "x/y"), Silent(), "pull x")
    desc = Descriptor("", "sha256:" + "0" * 64, 10)
    try:
        with pytest.raises(RegistryError, match=r"pull x: blob sha256:0+: blob unknown"):
            down.get(desc, False)
    finally:
        client.close()


def test_bearer_flow(server: str) -> None:
    Fake.bearer = True
    client = Client(server, credentials=Credentials("bob", "pw"))
    try:
        resp = client.request("GET", "/v2/", scope="repository:x/y:pull", what="t")
        assert resp.read() == b"{}"
        token_req = [r for r in Fake.requests if r[0].startswith("/token")]
        assert (
            "service=fake" in token_req[0][0]
            and "scope=repository%3Ax%2Fy%3Apull" in (token_req[0][0])
        )
        n = len(Fake.requests)
        client.request("GET", "/v2/", scope="repository:x/y:pull", what="t").read()
        assert len(Fake.requests) == n + 1  # the token is reused
    finally:
        client.close()
    wrong = Client(server, credentials=Credentials("bob", "nope"))
    try:
        with pytest.raises(RegistryError, match="refused the credentials of 'bob'"):
            wrong.request("GET", "/v2/", scope="repository:x/y:pull", what="t")
    finally:
        wrong.close()


def test_challenge_parsing() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/debian:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/debian:pull,push",
    }
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"


def test_credentials_file(tmp_path: Path) -> None:
    f = tmp_path / "auth.json"
    token = base64.b64encode(b"u:p:with:colons").decode()
    f.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": token},
                    "quay.io/team": {"username": "t", "password": "tp"},
                    "quay.io": {"auth": base64.b64encode(b"q:qp").decode()},
                    "broken.example": {"auth": "!!!"},
                }
            }
        )
    )
    assert load_credentials("docker.io", "library/x", f) == Credentials("u", "p:with:colons")
    assert load_credentials("quay.io", "team/app", f) == Credentials("t", "tp")
    assert load_credentials("quay.io", "other/app", f) == Credentials("q", "qp")
    assert load_credentials("ghcr.io", "a/b", f) is None
    assert load_credentials("ghcr.io", "a/b", tmp_path / "missing.json") is None
    with pytest.raises(RegistryError, match="not base64"):
        load_credentials("broken.example", "a", f)


def test_connection_keeps_dropping(server: str) -> None:
    Fake.drop_always = True
    client = Client(server)
    desc = Descriptor("", DIGEST, len(BLOB))
    try:
        with cache.holding():  # (a build: the blob it got or made held until its end)
            down = Downloader(client, Repository(server, "x/y"), Silent(), "pull x")
            with pytest.raises(RegistryError, match=r"blob sha256:\w+ failed 6 times"):
                down.get(desc, True)
    finally:
        client.close()
    assert list(store_path(DIGEST).parent.iterdir()) == []  # no partial blob (or lock) kept
