"""A crafted registry on 127.0.0.1: every answer is the test's (a hostile or broken
server: slow, redirecting, lying), unlike the real one in :mod:`registry_fixture`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.support.httpstub import Handler

Route = Callable[["Stub"], None]
REPO = "x/y"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Stub(Handler):
    routes: ClassVar[dict[str, Route]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        type(self).seen.append(path)
        route = type(self).routes.get(path)
        if route is None:
            self._send(404, b'{"errors":[{"code":"NOT_FOUND","message":"not here"}]}')
        else:
            route(self)

    do_HEAD = do_POST = do_PUT = do_GET


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    return lambda h: h._send(status, body, headers)


def redirect(location: str, status: int = 307) -> Route:
    return answer(status, b"", {"Location": location})


def big(
    status: int, size: int, headers: dict[str, str] | None = None, sent: list[int] | None = None
) -> Route:
    """An answer with a ``size``-byte body, made as it is sent (never held whole); how
    many bytes the client took is appended to ``sent``."""

    def route(h: Stub) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(size))
        h.end_headers()
        chunk = b"x" * (1 << 20)
        left = size
        try:
            while left > 0:
                n = min(left, len(chunk))
                h.wfile.write(chunk[:n])
                left -= n
        except OSError:
            pass  # the client hung up: what it should do
        h.close_connection = True
        if sent is not None:
            sent.append(size - left)

    return route


def taken(sent: list[int], timeout: float = 10.0) -> list[int]:
    """``sent`` once a :func:`big` answer has noted what the client took: the handler
    thread notes it after the client hangs up, which may be after the stub stopped."""
    deadline = time.monotonic() + timeout
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    return sent


def drip(data: bytes, started: threading.Event, limit: float = 20.0) -> Route:
    """``data`` at one byte a second, for at most ``limit`` seconds."""

    def route(h: Stub) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.close_connection = True
        end = time.monotonic() + limit
        for i in range(len(data)):
            if time.monotonic() > end:
                return
            try:
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
            except OSError:
                return
            started.set()
            time.sleep(1)

    return route


@contextlib.contextmanager
def serve(routes: dict[str, Route], tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Run a stub answering ``routes`` (path -> answer), over TLS with ``tls`` (a
    certificate and key); yields its ``host:port``."""
    handler = type("Routes", (Stub,), {"routes": routes, "seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def config_of(diff_ids: list[str], **extra: Any) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        **extra,
    }
    return json.dumps(config).encode()


@contextlib.contextmanager
def image(
    layers: list[bytes],
    *,
    media_type: str = OCI_LAYER,
    diff_ids: list[str] | None = None,
    manifest: bytes | None = None,
    routes: dict[str, Route] | None = None,
) -> Iterator[tuple[str, str]]:
    """A stub serving an image of ``layers`` (blobs as given: compress them first for a
    compressed layer) as ``x/y:latest``; yields (host, manifest digest). ``routes``
    override or add answers ("{layer0}" in a path stands for the first layer's digest)."""
    config = config_of(diff_ids if diff_ids is not None else [sha(b) for b in layers])
    raw = (
        manifest
        or json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
                "layers": [
                    {"mediaType": media_type, "digest": sha(b), "size": len(b)} for b in layers
                ],
            }
        ).encode()
    )
    table: dict[str, Route] = {
        "/v2/": answer(200, b"{}"),
        f"/v2/{REPO}/manifests/latest": answer(200, raw, {"Content-Type": OCI_MANIFEST}),
        f"/v2/{REPO}/manifests/{sha(raw)}": answer(200, raw, {"Content-Type": OCI_MANIFEST}),
        f"/v2/{REPO}/blobs/{sha(config)}": answer(200, config),
    }
    for blob in layers:
        table[f"/v2/{REPO}/blobs/{sha(blob)}"] = answer(200, blob)
    first = sha(layers[0]) if layers else ""
    for path, route in (routes or {}).items():
        table[path.replace("{layer0}", first)] = route
    with serve(table) as host:
        yield host, sha(raw)
