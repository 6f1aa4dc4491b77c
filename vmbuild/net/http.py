"""One HTTP stack (urllib3) for registries and package mirrors.

:class:`Http` sends requests the same way whoever asks: through the proxy the
environment names (:mod:`.proxy`; an https target through a ``CONNECT`` tunnel, so TLS
and its certificate check stay end to end), with keep-alive connections pooled per
origin and proxy (as many as there are threads, none waited for), certificates checked
unless the caller turned that off (``tls_verify``; ``trust_local``: a server on this
machine is trusted unchecked), one SSL context of each kind per process.

:meth:`Http.request` retries connection failures, 429 and 5xx answers with backoff
(``Retry-After`` honoured, at most 30 s) when the request can be repeated (a body given
as bytes or as a function that opens it anew); a proxy's failure is not retried. It
follows at most :data:`MAX_REDIRECTS` redirects, to http(s) URLs only, and drops
``Authorization`` and ``Cookie`` on a hop that leaves the first URL's origin. A body
nobody wants (a redirect's, a retried answer's) is read only when it is small
(:data:`DRAIN`); a larger one costs its connection instead, so a hostile server cannot
make vmbuild read or hold much. :meth:`Http.interrupt` wakes every thread blocked on one
of the stack's sockets (Ctrl-C while downloads run in threads).

A :class:`Response` body is read straight from the socket's buffered file as
``http.client`` does (urllib3's own ``read`` would copy every chunk twice), never
decoded (a digest is of the bytes as sent), and never beyond what the caller asks.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from vmbuild.errors import printable
from vmbuild.net.proxy import NetError, Proxy, is_local, proxy_for

if TYPE_CHECKING:  # urllib3 is imported with the first request (it costs ~40 ms)
    import urllib3
    from urllib3.connection import HTTPConnection

Body = bytes | Callable[[], BinaryIO] | None
RETRIES = 4
BACKOFF = 0.5
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = 30.0
DRAIN = 64 << 10  # an unwanted body up to this size is read (the connection kept)
SEND_BLOCK = 1 << 20  # a file body is sent in pieces of this size
USER_AGENT = "vmbuild/0.1"
_PRIVATE = frozenset({"authorization", "cookie"})  # not sent to another origin
# What reading a body may raise (a socket's error, a short or malformed answer).
FAILURES = (OSError, http.client.HTTPException)


class Interrupted(Exception):
    """The request was stopped by :meth:`Http.interrupt`."""


class RequestFailed(Exception):
    """:meth:`Http.send` got no answer: ``reason`` is the error underneath urllib3's."""

    def __init__(self, reason: BaseException):
        super().__init__(str(reason))
        self.reason = reason


class Unreachable(NetError):
    """No answer from ``url`` (``redirects`` hops from the first URL): ``reason`` is the
    error underneath, for the caller's message."""

    def __init__(self, url: str, redirects: int, reason: BaseException):
        self.url, self.redirects, self.reason = url, redirects, reason
        if redirects:
            super().__init__(
                f"cannot reach the redirect target {shown(url)}: {reason}",
                "the server sent it there; its storage may be down or misconfigured",
            )
        else:
            where = urllib.parse.urlsplit(url).netloc
            super().__init__(f"cannot reach {printable(where)}: {reason}", "check the network")


class BadRedirect(NetError):
    """A redirect to something other than an http(s) URL, or too many of them."""


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def shown(url: str) -> str:
    """``url`` for a message: without its query (a redirect's may hold a signature)."""
    parts = urllib.parse.urlsplit(url)
    return printable(f"{parts.scheme}://{parts.netloc}{parts.path}"[:300])


def cause(exc: BaseException) -> BaseException:
    """The error under urllib3's wrappers (what a message shows and a retry judges)."""
    for _ in range(8):
        if not type(exc).__module__.startswith("urllib3"):
            break
        inner = exc.__cause__ or next((a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc


class Response:
    """An answer: ``status``, ``reason``, ``headers``, ``url`` (after ``redirects``
    hops); its body is for the caller to read, or to :meth:`discard`."""

    def __init__(self, raw: urllib3.HTTPResponse, url: str):
        self.raw = raw
        self.url = url
        self.redirects = 0
        self.status = raw.status
        self.reason = printable(raw.reason or "")
        self.headers = raw.headers
        self._fp = cast(http.client.HTTPResponse, raw._fp)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def length(self) -> int | None:
        """Body bytes still to come, when the server said how many."""
        return self._fp.length

    def isclosed(self) -> bool:
        return self._fp.isclosed()

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = self._fp.readinto(buf)
        if self._fp.isclosed():
            self.raw.release_conn()  # all read: the connection serves the next request
        return n

    def read(self, limit: int | None = None) -> bytes:
        """At most ``limit`` bytes of the body (fewer only at its end); all of it
        without a limit (for callers that check nothing of its size, as tests)."""
        data = self._fp.read(limit)
        if self._fp.isclosed():
            self.raw.release_conn()
        return data

    def stream(self, limit: int, piece: int = 1 << 20) -> Iterator[bytes]:
        """The body in pieces of at most ``piece`` bytes, ending early once more than
        ``limit`` bytes came (at most ``limit + 1`` are read; then the caller's size
        check fails, and the connection is hung up)."""
        left = limit + 1
        while left > 0 and (data := self.read(min(piece, left))):
            left -= len(data)
            yield data
        self.discard()

    def retry_after(self) -> float | None:
        value = self.getheader("Retry-After")
        try:
            return min(float(value), MAX_RETRY_AFTER) if value else None
        except ValueError:
            return None

    def discard(self) -> None:
        """Done with the answer whatever its body: a small one is read (the connection
        can be used again), a large or unknown one is not; the connection goes instead."""
        fp = self._fp
        with contextlib.suppress(*FAILURES):
            if fp.length is not None and fp.length <= DRAIN:
                fp.read()
            elif fp.chunked and not fp.isclosed():
                fp.read(DRAIN)
        if fp.isclosed():
            self.raw.release_conn()
        else:
            self.close()

    def close(self) -> None:
        """Hang up: the connection is closed (its pool opens another when asked)."""
        self.raw.close()
        self.raw.release_conn()


_CONTEXTS: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(verify: bool) -> ssl.SSLContext:
    """The SSL context that checks certificates (``verify``: against the CA store, which
    ``$SSL_CERT_FILE``/``$SSL_CERT_DIR`` may name) or checks nothing; one of each per
    process and CA store: loading the store costs ~0.1 s."""
    key = (verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            if verify:
                ctx = ssl.create_default_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            _CONTEXTS[key] = ctx
    return ctx


class Http:
    """Requests to any server: pooled connections, one proxy rule, one retry and
    redirect policy, interruptible; ``threads``: how many may request at once."""

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        connect_timeout: float | None = None,
        tls_verify: bool = True,
        trust_local: bool = False,
        threads: int = 8,
    ):
        self.tls_verify = tls_verify
        self.trust_local = trust_local
        self._timeouts = (connect_timeout or timeout, timeout)  # to connect; each read
        self._threads = threads
        self._lock = threading.Lock()
        self._managers: dict[tuple[Proxy | None, bool], urllib3.PoolManager] = {}
        # every socket opened: a connection lets go of its socket when the answer says
        # "close", the answer's reader keeps reading it
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._mine = threading.local()  # each thread's answers not yet read to the end
        self._stop = threading.Event()

    # -- connections -------------------------------------------------------------------

    def _manager(self, scheme: str, netloc: str) -> tuple[urllib3.PoolManager, Proxy | None]:
        proxy = proxy_for(scheme, netloc)
        host = urllib.parse.urlsplit(f"//{netloc}").hostname or ""
        verify = self.tls_verify and not (self.trust_local and is_local(host))
        with self._lock:
            manager = self._managers.get((proxy, verify))
            if manager is None:
                kw: dict[str, Any] = {
                    "num_pools": 16,
                    "maxsize": self._threads,
                    "block": False,
                    "retries": False,
                    "blocksize": SEND_BLOCK,
                    "ssl_context": tls_context(verify),
                }
                from vmbuild.net.pools import pool_manager

                manager = pool_manager(proxy, self._connected, self._timeouts, kw)
                self._managers[(proxy, verify)] = manager
        return manager, proxy

    def _connected(self, conn: HTTPConnection) -> None:
        if isinstance(conn.sock, socket.socket):
            with self._lock:
                self._socks.add(conn.sock)

    def interrupt(self) -> None:
        """Make every request of every thread stop soon: sockets are shut down (a blocked
        read returns), and new requests and retry waits raise :class:`Interrupted`."""
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            # The plain socket's shutdown, also under TLS: it only wakes the reader.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def resume(self) -> None:
        """Allow requests again after :meth:`interrupt` (interrupted connections go)."""
        self.close()
        self._stop.clear()

    def reset(self) -> None:
        """Hang up on this thread's answers not read to the end (one abandoned half read)."""
        for resp in getattr(self._mine, "open", []):
            if not resp.isclosed():
                resp.close()
        self._mine.open = []

    def close(self) -> None:
        """Close every connection of every thread (the stack can still be used)."""
        with self._lock:
            managers = list(self._managers.values())
            socks = list(self._socks)
        for manager in managers:
            manager.clear()  # the pools go, and the connections they keep
        for sock in socks:
            sock.close()  # those in use (a thread that reads one gets an error)

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Interrupted()

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted()

    # -- requests ----------------------------------------------------------------------

    def send(self, method: str, url: str, headers: Mapping[str, str], body: Body) -> Response:
        """One request, as it is: no retry, no redirect followed. A proxy's failure is
        :class:`ProxyFailed`, any other :class:`RequestFailed`."""
        self._check_stop()
        parts = urllib.parse.urlsplit(url)
        manager, proxy = self._manager(parts.scheme, parts.netloc)
        data = body() if callable(body) else body
        try:
            raw = manager.urlopen(
                method,
                url,
                body=data,
                headers={"User-Agent": USER_AGENT, **headers},
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        except Exception as exc:
            from vmbuild.net.pools import FAILURES as BELOW
            from vmbuild.net.pools import ProxyError

            if not isinstance(exc, BELOW):
                raise
            self._check_stop()  # the socket was shut down to stop us
            root = cause(exc)
            if proxy is not None:
                failed = proxy.tunnel_refused(parts.netloc, str(root))
                if failed is None and isinstance(exc, ProxyError):
                    failed = proxy.unreachable(str(root))
                if failed is not None:
                    raise failed from exc
            raise RequestFailed(root) from exc
        finally:
            if data is not None and not isinstance(data, bytes):
                data.close()
        resp = Response(cast("urllib3.HTTPResponse", raw), url)
        if proxy is not None and parts.scheme == "http" and resp.status == 407:
            resp.close()
            raise proxy.refused(parts.netloc, 407, resp.reason)
        mine = [r for r in getattr(self._mine, "open", []) if not r.isclosed()]
        self._mine.open = [*mine, resp]
        return resp

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
    ) -> Response:
        """Send a request, retried and redirected as the module says, and return the
        answer (any status; its body is for the caller to read or discard).
        :class:`Unreachable`, :class:`BadRedirect`, :class:`ProxyFailed` or
        :class:`Interrupted` when there is none."""
        start = url
        attempt = redirects = 0
        while True:
            hop = dict(headers or {})
            if origin_of(url) != origin_of(start):
                hop = {k: v for k, v in hop.items() if k.lower() not in _PRIVATE}
            try:
                resp = self.send(method, url, hop, body)
            except RequestFailed as exc:
                attempt += 1
                root = exc.reason
                if attempt >= retries or isinstance(root, ConnectionRefusedError | socket.gaierror):
                    raise Unreachable(url, redirects, root) from exc
                self._sleep(backoff * 2 ** (attempt - 1))
                continue
            location = resp.getheader("Location")
            if resp.status in REDIRECTS and location:
                resp.discard()
                url = _redirect(start, url, location, redirects)
                redirects += 1
                continue
            if resp.status in RETRY_STATUS and attempt + 1 < retries:
                resp.discard()
                attempt += 1
                self._sleep(resp.retry_after() or backoff * 2 ** (attempt - 1))
                continue
            resp.redirects = redirects
            return resp


def _redirect(start: str, url: str, location: str, redirects: int) -> str:
    target = urllib.parse.urljoin(url, location)
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRedirect(
            f"{shown(url)} redirects to {printable(location[:200])!r}, not an HTTP(S) URL",
            "the server is misconfigured",
        )
    if redirects >= MAX_REDIRECTS:
        raise BadRedirect(
            f"too many redirects from {shown(start)} (more than {MAX_REDIRECTS}; the last "
            f"to {shown(target)})",
            "the server or its storage redirects in a loop",
        )
    return target
