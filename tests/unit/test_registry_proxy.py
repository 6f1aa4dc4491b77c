"""The registry client through an HTTP proxy: a small CONNECT and absolute-form proxy runs
here on 127.0.0.1 and is the only way to the made-up host ``registry.test`` (the proxy
maps it to 127.0.0.1; the client is never allowed to resolve it), so a request that
arrives proves it went through the proxy."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vmbuild.errors import RegistryError
from vmbuild.registry.client import Client
from vmbuild.registry.proxy import proxy_for

NAME = "registry.test"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te"}
HOP_BY_HOP |= {"transfer-encoding", "upgrade", "content-length"}


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    names: dict[str, str]  # made-up host name -> address
    login: tuple[str, str] | None = None
    log: list[tuple[str, str, str]]  # (method, target, Proxy-Authorization)


class ProxyHandler(BaseHTTPRequestHandler):
    """CONNECT tunnels, and absolute-form requests forwarded to the named host."""

    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _admitted(self) -> bool:
        given = self.headers.get("Proxy-Authorization", "")
        self.server.log.append((self.command, self.path, given))
        if self.server.login is None:
            return True
        want = "Basic " + base64.b64encode(":".join(self.server.login).encode()).decode()
        if given == want:
            return True
        self._reply(407, {"Proxy-Authenticate": 'Basic realm="test proxy"'})
        return False

    def do_CONNECT(self) -> None:
        if not self._admitted():
            return
        host, _, port = self.path.rpartition(":")
        if host not in self.server.names:
            self._reply(403)
            return
        upstream = socket.create_connection((self.server.names[host], int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        pipes = [
            threading.Thread(target=_pipe, args=(self.connection, upstream), daemon=True),
            threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True),
        ]
        for t in pipes:
            t.start()
        for t in pipes:
            t.join()
        upstream.close()

    def _forward(self) -> None:
        if not self._admitted():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in self.server.names:
            self._reply(502)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(self.server.names[url.hostname], url.port, timeout=10)
        try:
            target = url.path + (f"?{url.query}" if url.query else "")
            conn.request(self.command, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@dataclass
class FakeProxy:
    """A proxy on 127.0.0.1 that knows ``names`` (host name -> address) and nothing else."""

    names: dict[str, str] = field(default_factory=lambda: {NAME: "127.0.0.1"})
    login: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.server = ProxyServer(("127.0.0.1", 0), ProxyHandler)
        self.server.names = self.names
        self.server.login = self.login
        self.server.log = []
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.daemon = True
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def log(self) -> list[tuple[str, str]]:
        return [(m, t) for m, t, _ in self.server.log]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Target(BaseHTTPRequestHandler):
    """A registry answering ``/v2/``; it records the Host header of each request."""

    protocol_version = "HTTP/1.1"
    hosts: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        body = b"{}" if self.path == "/v2/" else b'{"errors":[{"code":"NAME_UNKNOWN"}]}'
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (its own trust anchor) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def serve(tls: tuple[Path, Path] | None = None) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    srv.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    return srv


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """No proxy variables from outside; ``.test`` names resolve only as the test says."""
    for var in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setattr("vmbuild.registry.client.BACKOFF", 0.01)
    resolvable: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            if host not in resolvable:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host = resolvable[host]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    Target.hosts = []
    yield resolvable


@pytest.fixture
def proxy() -> Iterator[FakeProxy]:
    p = FakeProxy()
    yield p
    p.stop()


@pytest.fixture
def cert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A certificate for registry.test, trusted through $SSL_CERT_FILE."""
    pair = make_cert(tmp_path, NAME)
    monkeypatch.setenv("SSL_CERT_FILE", str(pair[0]))
    return pair


@pytest.fixture
def tls_target(cert: tuple[Path, Path]) -> Iterator[int]:
    srv = serve(cert)
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def plain_target() -> Iterator[int]:
    srv = serve()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def get_v2(client: Client) -> bytes:
    return client.request("GET", "/v2/", scope="", what="t").read()


def one_line(exc: pytest.ExceptionInfo[RegistryError], *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and all(p in text for p in parts), text
    return text


def test_https_goes_through_a_connect_tunnel(
    proxy: FakeProxy, tls_target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    host = f"{NAME}:{tls_target}"
    client = Client(host)
    try:
        assert get_v2(client) == b"{}" and get_v2(client) == b"{}"
    finally:
        client.close()
    # One tunnel, kept alive for both requests; the certificate was checked for the name.
    assert proxy.log == [("CONNECT", host)]
    assert Target.hosts == [host, host]


def test_tunnel_keeps_certificate_checks(
    proxy: FakeProxy, tls_target: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(make_cert(tmp_path, "other.test")[0]))
    client = Client(f"{NAME}:{tls_target}")
    try:
        with pytest.raises(RegistryError) as err:
            get_v2(client)
    finally:
        client.close()
    one_line(err, "CERTIFICATE_VERIFY_FAILED")


def test_plain_http_uses_absolute_form(
    proxy: FakeProxy, plain_target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    host = f"{NAME}:{plain_target}"
    client = Client(host, tls_verify=False)
    try:
        assert get_v2(client) == b"{}" and get_v2(client) == b"{}"
        # HTTPS was tried first (through the tunnel), then plain HTTP through the proxy.
        assert client.base() == f"http://{host}"
    finally:
        client.close()
    url = f"http://{host}/v2/"
    assert proxy.log == [("CONNECT", host), ("GET", url), ("GET", url)]
    assert Target.hosts == [host, host]


def test_no_proxy_and_local_registries_go_direct(
    proxy: FakeProxy,
    plain_target: int,
    monkeypatch: pytest.MonkeyPatch,
    _env: dict[str, str],
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "other.example, .test")
    _env[NAME] = "127.0.0.1"
    for host in (f"{NAME}:{plain_target}", f"127.0.0.1:{plain_target}"):
        client = Client(host, tls_verify=False)
        try:
            assert get_v2(client) == b"{}"
        finally:
            client.close()
    monkeypatch.delenv("NO_PROXY")
    client = Client(f"localhost:{plain_target}")
    try:
        assert get_v2(client) == b"{}"
    finally:
        client.close()
    assert proxy.log == []


@pytest.mark.parametrize(
    ("no_proxy", "netloc", "direct"),
    [
        ("", "registry.test:5000", False),
        ("*", "registry.test:5000", True),
        ("registry.test", "registry.test:5000", True),
        ("test", "registry.test", True),
        (".test", "registry.test", True),
        ("*.test", "registry.test", True),
        ("est", "registry.test", False),
        ("registry.test:5000", "registry.test:5000", True),
        ("registry.test:5001", "registry.test:5000", False),
        ("registry.test:443", "registry.test", True),
        ("10.0.0.0/8", "10.1.2.3:5000", True),
        ("10.0.0.0/8", "11.1.2.3:5000", False),
        ("2001:db8::/32", "[2001:db8::1]:5000", True),
        ("a.example,  registry.test ,b.example", "registry.test", True),
        ("", "localhost:5000", True),
        ("", "127.0.0.2:5000", True),
        ("", "[::1]:5000", True),
    ],
)
def test_no_proxy_rules(
    no_proxy: str, netloc: str, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    assert (proxy_for("https", netloc) is None) == direct


def test_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proxy_for("https", "registry.test") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.example:1")
    monkeypatch.setenv("https_proxy", "lower.example:2")  # no scheme: http, as curl
    got = proxy_for("https", "registry.test")
    assert got is not None and (got.host, got.port, got.variable) == (
        "lower.example",
        2,
        "https_proxy",
    )
    assert proxy_for("http", "registry.test") is None  # https_proxy is for https only
    monkeypatch.setenv("HTTP_PROXY", "http://u%40x:p%3Aw@p.example")
    monkeypatch.setenv("REQUEST_METHOD", "GET")  # CGI: HTTP_PROXY may come from a request
    assert proxy_for("http", "registry.test") is None
    monkeypatch.delenv("REQUEST_METHOD")
    got = proxy_for("http", "registry.test")
    assert got is not None and (got.host, got.port) == ("p.example", 80)
    assert (got.username, got.password, str(got)) == ("u@x", "p:w", "http://p.example:80")
    monkeypatch.setenv("https_proxy", "socks5://s.example:1080")
    with pytest.raises(RegistryError) as err:
        proxy_for("https", "registry.test")
    one_line(err, "$https_proxy", "socks5://s.example", "http://")


def test_proxy_login(tls_target: int, plain_target: int, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FakeProxy(login=("u@x", "p:w"))
    host = f"{NAME}:{tls_target}"
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = Client(host)
        with pytest.raises(RegistryError) as err:
            get_v2(client)
        one_line(err, f"proxy {proxy.url} wants a login (407", "$HTTPS_PROXY")
        assert proxy.log == [("CONNECT", host)]  # not retried
        wrong = proxy.url.replace("://", "://u%40x:nope@")
        monkeypatch.setenv("HTTPS_PROXY", wrong)
        with pytest.raises(RegistryError) as err:
            get_v2(Client(host))
        assert "nope" not in one_line(err, "refused the credentials of 'u@x'")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("://", "://u%40x:p%3Aw@"))
        client = Client(host)
        assert get_v2(client) == b"{}"
        client.close()
        # Plain HTTP through the same proxy: the login goes with every request.
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with pytest.raises(RegistryError) as err:
            get_v2(Client(f"{NAME}:{plain_target}", tls_verify=False))
        one_line(err, "wants a login (407", "$HTTP_PROXY")
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("://", "://u%40x:p%3Aw@"))
        client = Client(f"{NAME}:{plain_target}", tls_verify=False)
        assert get_v2(client) == b"{}"
        client.close()
        good = "Basic " + base64.b64encode(b"u@x:p:w").decode()
        assert proxy.server.log[-1] == ("GET", f"http://{NAME}:{plain_target}/v2/", good)
    finally:
        proxy.stop()


def test_proxy_unreachable_or_refusing(proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HTTPS_PROXY", dead)
    with pytest.raises(RegistryError) as err:
        get_v2(Client(f"{NAME}:5000"))
    one_line(err, f"cannot reach proxy {dead} (from $HTTPS_PROXY)", "no_proxy")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with pytest.raises(RegistryError) as err:
        get_v2(Client("elsewhere.test:5000"))
    one_line(err, f"proxy {proxy.url} refused to connect to elsewhere.test:5000: 403")
    assert proxy.log == [("CONNECT", "elsewhere.test:5000")]
