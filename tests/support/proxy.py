"""A small CONNECT and absolute-form HTTP proxy on 127.0.0.1, the only way to the made-up
host ``registry.test``; a registry-like target behind it; self-signed certificates."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
