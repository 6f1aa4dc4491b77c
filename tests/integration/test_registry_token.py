"""The bearer-token flow against a real registry: docker-registry with ``auth: token``
trusting a certificate made here, and a small token server (ES256 JWTs) in the test;
and a registry on this machine that speaks TLS."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.registry_fixture import (
    Registry,
    have_tools,
    make_archive,
    registry,
    skopeo,
)

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo"),
]

USER, PASSWORD = "carol", "tok-pw"
SERVICE, ISSUER = "test-registry", "test-issuer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_kid(key: ec.EllipticCurvePublicKey) -> str:
    """The key ID docker-registry computes for a trusted key (libtrust's format)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


class TokenServer(BaseHTTPRequestHandler):
    key: ClassVar[ec.EllipticCurvePrivateKey]
    scopes_seen: ClassVar[list[list[str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != good:
            return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "login"}]})
        scopes = query.get("scope", [])
        type(self).scopes_seen.append(scopes)
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": query.get("service", [""])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_kid(self.key.public_key())}
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._send(200, {"token": f"{signing}.{b64url(sig)}", "expires_in": 300})


def make_cert(tmp: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = tmp / "token-cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, path


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("token")
    key, cert = make_cert(tmp)
    TokenServer.key = key
    srv = ThreadingHTTPServer(("127.0.0.1", 0), TokenServer)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    auth = {
        "token": {
            "realm": f"http://127.0.0.1:{srv.server_address[1]}/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(cert),
        }
    }
    try:
        with registry(tmp / "reg", auth=auth) as reg:
            reg.user, reg.password = USER, PASSWORD
            yield reg
    finally:
        srv.shutdown()
        srv.server_close()


def vmbuild(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmbuild", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_token_flow(token_registry: Registry, tmp_path: Path) -> None:
    reg = token_registry
    arc = make_archive(tmp_path / "a.tar", [{"f": os.urandom(20_000)}, {"g": b"g" * 100}])
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds={USER}:{PASSWORD}",
        f"docker-archive:{arc}",
        f"docker://{reg.host}/tok/img:1",
    )
    auth = tmp_path / "auth.json"
    env = {"REGISTRY_AUTH_FILE": str(auth), "VMBUILD_CACHE_DIR": str(tmp_path / "cache")}
    args = ("prefetch", "--image-name", f"{reg.host}/tok/img", "--image-tag", "1")
    res = vmbuild(*args, env=env)
    assert res.returncode != 0 and "requires a login" in res.stderr, res.stderr
    auth.write_text(json.dumps({"auths": {reg.host: {"username": USER, "password": "bad"}}}))
    res = vmbuild(*args, env=env)
    assert res.returncode != 0 and f"refused the credentials of '{USER}'" in res.stderr
    auth.write_text(json.dumps({"auths": {reg.host: {"username": USER, "password": PASSWORD}}}))
    res = vmbuild(*args, env=env)
    assert res.returncode == 0, res.stderr
    spec = tomllib.loads(res.stdout)
    assert spec["imageDigest"] == manifest_of_token(reg, "tok/img", "1")
    # A push to another repository mounts the blobs the pull saw (token for both repos).
    res = vmbuild("push", str(arc), f"docker://{reg.host}/tok/copy:2", env=env)
    assert res.returncode == 0, res.stderr
    assert "(0 uploaded, 3 mounted, 0 already there)" in res.stderr, res.stderr
    assert any(
        "repository:tok/img:pull" in s and "repository:tok/copy:pull,push" in s
        for s in TokenServer.scopes_seen
    )


def manifest_of_token(reg: Registry, repo: str, tag: str) -> str:
    """The manifest digest, via skopeo (the fixture's plain HTTP helper has no tokens)."""
    raw = skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"--creds={USER}:{PASSWORD}",
        f"docker://{reg.host}/{repo}:{tag}",
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_local_tls_registry(tmp_path: Path) -> None:
    """A registry on this machine speaking TLS with a self-signed certificate: used over
    HTTPS without certificate checks, as docker does for localhost."""
    key, cert = make_cert(tmp_path)
    key_pem = tmp_path / "key.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls = {"tls": {"certificate": str(cert), "key": str(key_pem)}}
    with registry(tmp_path / "reg", http_extra=tls) as reg:
        arc = make_archive(tmp_path / "a.tar", [{"f": b"tls" * 100}])
        skopeo(
            "copy", "--dest-tls-verify=false", f"docker-archive:{arc}", f"docker://{reg.host}/t/i:1"
        )
        env = {"VMBUILD_CACHE_DIR": str(tmp_path / "cache")}
        res = vmbuild(
            "--debug", "prefetch", "--image-name", f"{reg.host}/t/i", "--image-tag", "1", env=env
        )
        assert res.returncode == 0, res.stderr
        assert "using plain HTTP" not in res.stderr
