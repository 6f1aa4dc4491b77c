"""Mirror downloads through an HTTP proxy: the test's proxy on 127.0.0.1 is the only way
to the made-up host ``registry.test`` (it maps the name to 127.0.0.1; the client is never
allowed to resolve it), so a request that arrives proves it went through the proxy."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.proxy import NAME, FakeProxy
from tests.support.slowmirror import Behaviour, serve
from vmbuild.debian.http import MirrorError, download, get

DEB = b"!<arch>\n" + bytes(range(256)) * 8
INDEX = b"Package: p\nVersion: 1.0\n"


@pytest.fixture
def proxied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeProxy, str]]:
    """A mirror on 127.0.0.1 named ``registry.test:PORT`` and a proxy that knows the name;
    ``$http_proxy`` names the proxy and nothing else resolves ``.test``."""
    root = tmp_path / "mirror"
    (root / "pool").mkdir(parents=True)
    (root / "pool" / "p_1.0_all.deb").write_bytes(DEB)
    (root / "Packages").write_bytes(INDEX)
    for var in ("http_proxy", "https_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    proxy = FakeProxy()
    monkeypatch.setenv("http_proxy", proxy.url)
    with serve(root, Behaviour()) as url:
        yield proxy, url.replace("127.0.0.1", NAME)
    proxy.stop()


def test_an_index_and_a_deb_go_through_the_proxy(
    proxied: tuple[FakeProxy, str], tmp_path: Path
) -> None:
    proxy, mirror = proxied
    assert get(f"{mirror}/Packages", 1 << 20) == INDEX
    dest = tmp_path / "p.deb"
    download(mirror, "pool/p_1.0_all.deb", dest, len(DEB), hashlib.sha256(DEB).hexdigest())
    assert dest.read_bytes() == DEB
    assert proxy.log == [("GET", f"{mirror}/Packages"), ("GET", f"{mirror}/pool/p_1.0_all.deb")]


def test_no_proxy_goes_direct(
    proxied: tuple[FakeProxy, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, mirror = proxied
    monkeypatch.setenv("no_proxy", ".test")
    with pytest.raises(MirrorError, match="cannot reach"):  # the name resolves nowhere
        get(f"{mirror}/Packages", 1 << 20)
    assert proxy.log == []
