"""Connections through an HTTP proxy, chosen from the environment as curl and Go do.

Behind a corporate proxy a registry is only reachable through it, so the variables every
other tool honours are honoured here: ``https_proxy``/``HTTPS_PROXY`` for https targets,
``http_proxy``/``HTTP_PROXY`` for plain http ones (lowercase wins; ``HTTP_PROXY`` is
ignored in a CGI environment), and ``no_proxy``/``NO_PROXY`` (``*``, host names matching
themselves and their subdomains, optional ports, and for IP addresses CIDR ranges). A
registry on this machine (localhost, a loopback address) is never proxied.

An https target is reached through a ``CONNECT`` tunnel, so TLS and its certificate check
are end to end with the registry; a plain http target is asked for in absolute form
(``GET http://host/path``). Only ``http://`` proxies are supported (the proxy's own URL;
``user:password@`` in it is sent as ``Proxy-Authorization: Basic``).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import ssl
import urllib.parse
from typing import NamedTuple

from vmbuild.errors import RegistryError

_TUNNEL_RE = re.compile(r"Tunnel connection failed: (\d{3})\s*(.*)")


class ProxyError(ConnectionError):
    """The proxy failed us (unreachable, refused the tunnel, wants a login): a
    connection error, so a probe falls back, but never worth retrying."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


class Proxy(NamedTuple):
    host: str
    port: int
    variable: str  # where it came from, for messages: "https_proxy"
    username: str = ""
    password: str = ""

    def __str__(self) -> str:
        """The proxy without its credentials, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def auth_headers(self) -> dict[str, str]:
        if not self.username and not self.password:
            return {}
        raw = f"{self.username}:{self.password}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode()}

    def unreachable(self, exc: OSError) -> ProxyError:
        return ProxyError(
            f"cannot reach proxy {self} (from ${self.variable}): {exc}",
            f"check ${self.variable}, or add the registry to $no_proxy",
        )

    def refused(self, target: str, status: int, reason: str) -> ProxyError:
        if status == 407:
            if self.username:
                return ProxyError(
                    f"proxy {self} refused the credentials of {self.username!r} "
                    "(407 Proxy Authentication Required)",
                    f"fix the user and password in ${self.variable}",
                )
            return ProxyError(
                f"proxy {self} wants a login (407 Proxy Authentication Required)",
                f"put them in ${self.variable}: http://user:password@host:port",
            )
        return ProxyError(
            f"proxy {self} refused to connect to {target}: {status} {reason}".rstrip(),
            f"check ${self.variable}, or add the registry to $no_proxy",
        )

    def tunnel(self, netloc: str, *, timeout: float, context: ssl.SSLContext) -> _Tunnel:
        """HTTPS to ``netloc`` through this proxy."""
        return _Tunnel(self, netloc, timeout=timeout, context=context)

    def forward(self, netloc: str, *, timeout: float) -> _Forward:
        """Plain HTTP to ``netloc`` through this proxy."""
        return _Forward(self, f"http://{netloc}", timeout=timeout)


def proxy_for(scheme: str, netloc: str) -> Proxy | None:
    """The proxy the environment names for ``scheme://netloc``, or None (go direct)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the usual case, without importing urllib.request (~10 ms)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme)
    if not url:
        return None
    host = urllib.parse.urlsplit(f"//{netloc}").hostname or netloc
    if _local(host) or _bypass(
        netloc, 443 if scheme == "https" else 80, host, proxies.get("no", "")
    ):
        return None
    variable = f"{scheme}_proxy"
    return _parse(url, variable if os.environ.get(variable) else variable.upper())


def _local(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bypass(netloc: str, default_port: int, host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` covers the target: ``*``; a name (leading ``.`` or ``*.``
    ignored) matching the host or a parent domain; ``name:port`` only on that port; an
    IP address or CIDR range containing an IP target."""
    import ipaddress

    port = urllib.parse.urlsplit(f"//{netloc}").port or default_port
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.lower().split(","):
        entry = raw.strip()
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
                continue
            except ValueError:
                pass
        name, want = entry, None
        split = urllib.parse.urlsplit(f"//{entry}")
        try:
            if split.port is not None:
                name, want = split.hostname or "", split.port
        except ValueError:
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if not name or (want is not None and want != port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def _parse(url: str, variable: str) -> Proxy:
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        raise RegistryError(
            f"${variable} ({shown}…) is not a proxy vmbuild can use",
            "give an http:// proxy URL, e.g. http://proxy.example:3128 (TLS or SOCKS to the "
            "proxy is not supported)",
        )
    unquote = urllib.parse.unquote
    return Proxy(
        parts.hostname,
        port,
        variable,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


class _Tunnel(http.client.HTTPSConnection):
    """HTTPS to the target through a ``CONNECT`` tunnel: TLS is with the target itself."""

    def __init__(self, proxy: Proxy, netloc: str, *, timeout: float, context: ssl.SSLContext):
        super().__init__(
            proxy.host, proxy.port, timeout=timeout, context=context, blocksize=1 << 20
        )
        parts = urllib.parse.urlsplit(f"//{netloc}")
        self.proxy = proxy
        self.netloc = netloc
        self._tls = context
        self._server_name = parts.hostname or netloc
        # Brackets kept: the CONNECT line needs them for an IPv6 address.
        target = netloc.rsplit(":", 1)[0] if parts.port else netloc
        self.set_tunnel(target, parts.port or 443, headers=proxy.auth_headers())

    def connect(self) -> None:
        try:
            http.client.HTTPConnection.connect(self)  # TCP to the proxy, then CONNECT
        except OSError as exc:
            m = _TUNNEL_RE.match(str(exc))
            if m:
                raise self.proxy.refused(self.netloc, int(m.group(1)), m.group(2)) from exc
            raise self.proxy.unreachable(exc) from exc
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        # The Host header as written (http.client would bracket an IPv6 tunnel host twice).
        super().putrequest(method, url, True, skip_accept_encoding)
        if not skip_host:
            self.putheader("Host", self.netloc)


class _Forward(http.client.HTTPConnection):
    """Plain HTTP through the proxy: every request names its absolute URL."""

    def __init__(self, proxy: Proxy, origin: str, *, timeout: float):
        super().__init__(proxy.host, proxy.port, timeout=timeout, blocksize=1 << 20)
        self.proxy = proxy
        self.origin = origin

    def connect(self) -> None:
        try:
            super().connect()
        except OSError as exc:
            raise self.proxy.unreachable(exc) from exc

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        super().putrequest(
            method,
            self.origin + url if url.startswith("/") else url,
            skip_host,
            skip_accept_encoding,
        )
        for name, value in self.proxy.auth_headers().items():
            self.putheader(name, value)

    def getresponse(self) -> http.client.HTTPResponse:
        resp = super().getresponse()
        if resp.status == 407:
            resp.close()  # its body is not wanted, and the connection goes anyway
            self.close()
            raise self.proxy.refused(self.origin, 407, resp.reason)
        return resp
