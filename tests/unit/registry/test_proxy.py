"""The registry client through an HTTP proxy: a small CONNECT and absolute-form proxy runs
here on 127.0.0.1 and is the only way to the made-up host ``registry.test`` (the proxy
maps it to 127.0.0.1; the client is never allowed to resolve it), so a request that
arrives proves it went through the proxy."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.proxy import NAME, FakeProxy, Target, make_cert, serve
from vmbuild.errors import RegistryError
from vmbuild.registry.client import Client


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
