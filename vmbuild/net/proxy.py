"""Which HTTP proxy a URL goes through, chosen from the environment as curl and Go do.

Behind a corporate proxy a server is only reachable through it, so the variables every
other tool honours are honoured here: ``https_proxy``/``HTTPS_PROXY`` for https targets,
``http_proxy``/``HTTP_PROXY`` for plain http ones (lowercase wins; ``HTTP_PROXY`` is
ignored in a CGI environment), and ``no_proxy``/``NO_PROXY`` (``*``, host names matching
themselves and their subdomains, optional ports, and for IP addresses CIDR ranges). A
server on this machine (localhost, a loopback address) is never proxied.

Only ``http://`` proxies are supported (the proxy's own URL; ``user:password@`` in it is
sent as ``Proxy-Authorization: Basic``). How a request goes through one (a ``CONNECT``
tunnel for https, absolute-form requests for http) is :mod:`vmbuild.net.http`'s.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from typing import NamedTuple

from vmbuild.errors import VmbuildError

_TUNNEL_RE = re.compile(r"Tunnel connection failed: (\d{3})\s*(.*)")


class NetError(VmbuildError):
    """A server or a proxy cannot be reached, or the environment names an unusable proxy."""

    exit_code = 5


class ProxyFailed(NetError):
    """The proxy failed us (unreachable, refused the tunnel, wants a login): never worth
    retrying, and the hint names the variable it came from."""


class Proxy(NamedTuple):
    host: str
    port: int
    variable: str  # where it came from, for messages: "https_proxy"
    username: str = ""
    password: str = ""

    def __str__(self) -> str:
        """The proxy without its credentials, for messages (and for urllib3)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def auth_headers(self) -> dict[str, str]:
        if not self.username and not self.password:
            return {}
        raw = f"{self.username}:{self.password}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode()}

    def unreachable(self, reason: str) -> ProxyFailed:
        return ProxyFailed(
            f"cannot reach proxy {self} (from ${self.variable}): {reason}",
            f"check ${self.variable}, or add the server to $no_proxy",
        )

    def refused(self, target: str, status: int, reason: str) -> ProxyFailed:
        if status == 407:
            if self.username:
                return ProxyFailed(
                    f"proxy {self} refused the credentials of {self.username!r} "
                    "(407 Proxy Authentication Required)",
                    f"fix the user and password in ${self.variable}",
                )
            return ProxyFailed(
                f"proxy {self} wants a login (407 Proxy Authentication Required)",
                f"put them in ${self.variable}: http://user:password@host:port",
            )
        return ProxyFailed(
            f"proxy {self} refused to connect to {target}: {status} {reason}".rstrip(),
            f"check ${self.variable}, or add the server to $no_proxy",
        )

    def tunnel_refused(self, target: str, error: str) -> ProxyFailed | None:
        """The failure a CONNECT answer other than 200 became (http.client's text)."""
        m = _TUNNEL_RE.search(error)
        return self.refused(target, int(m.group(1)), m.group(2)) if m else None


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
    if is_local(host) or _bypass(
        netloc, 443 if scheme == "https" else 80, host, proxies.get("no", "")
    ):
        return None
    variable = f"{scheme}_proxy"
    return _parse(url, variable if os.environ.get(variable) else variable.upper())


def is_local(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 without brackets) is this machine."""
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
        raise NetError(
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
