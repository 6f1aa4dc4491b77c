"""urllib3's pool managers, made to remember each connection once it is open (so that
:meth:`vmbuild.net.http.Http.interrupt` can wake a thread blocked on it). Imported with
the first request: urllib3 costs ~40 ms to load."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Callable
from typing import Any, cast

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError, ProxyError

from vmbuild.net.proxy import Proxy

__all__ = ["FAILURES", "ProxyError", "pool_manager"]

# What a request may raise from below (urllib3, a socket, http.client).
FAILURES = (HTTPError, OSError, http.client.HTTPException)
Connected = Callable[[HTTPConnection], None]


def pool_manager(
    proxy: Proxy | None, connected: Connected, timeouts: tuple[float, float], kw: dict[str, Any]
) -> urllib3.PoolManager:
    """A PoolManager (``proxy`` None) or a ProxyManager with the pool arguments ``kw``
    and ``timeouts`` (to connect, for each read); ``connected`` is told of each
    connection it opens."""
    kw = {**kw, "timeout": urllib3.Timeout(connect=timeouts[0], read=timeouts[1])}
    if proxy is None:
        return _Direct(connected, **kw)
    return _Proxied(connected, str(proxy), proxy_headers=proxy.auth_headers(), **kw)


class _Plain(HTTPConnection):
    def __init__(self, *args: Any, connected: Connected, **kw: Any):
        super().__init__(*args, **kw)
        self._connected = connected

    def connect(self) -> None:
        super().connect()
        self._connected(self)


class _Tls(HTTPSConnection):
    def __init__(self, *args: Any, connected: Connected, **kw: Any):
        super().__init__(*args, **kw)
        self._connected = connected

    def connect(self) -> None:
        super().connect()
        if self.ssl_context is not None and self.ssl_context.verify_mode == ssl.CERT_NONE:
            self.is_verified = True  # unchecked because the caller said so: no warning
        self._connected(self)


def _track(pool: HTTPConnectionPool, connected: Connected) -> Any:
    pool.ConnectionCls = _Tls if pool.scheme == "https" else _Plain
    pool.conn_kw["connected"] = connected
    return pool


class _Tracking(urllib3.PoolManager):
    """A pool manager whose pools' connections tell ``connected`` of their sockets."""

    connected: Connected

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        return cast(
            HTTPConnectionPool,
            _track(super()._new_pool(scheme, host, port, request_context), self.connected),
        )


class _Direct(_Tracking):
    def __init__(self, connected: Connected, **kw: Any):
        super().__init__(**kw)
        self.connected = connected


class _Proxied(_Tracking, urllib3.ProxyManager):
    def __init__(self, connected: Connected, url: str, **kw: Any):
        urllib3.ProxyManager.__init__(self, url, **kw)
        self.connected = connected
