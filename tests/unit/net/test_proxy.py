"""The proxy rule: which variable names the proxy for a URL, and when ``no_proxy`` (or
the target being this machine) means going direct."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmbuild.net.proxy import NetError, proxy_for


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No proxy variables from outside."""
    for var in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    yield


def one_line(exc: pytest.ExceptionInfo[NetError], *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and all(p in text for p in parts), text
    return text


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
    with pytest.raises(NetError) as err:
        proxy_for("https", "registry.test")
    one_line(err, "$https_proxy", "socks5://s.example", "http://")
