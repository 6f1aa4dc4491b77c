"""HTTP to one registry: connections, scheme, authentication, redirects, retries, errors.

Each thread keeps its own keep-alive connection per origin. HTTPS is used unless the
registry is on this machine (localhost, 127.0.0.1, ::1) or ``tls_verify`` is off; then
HTTPS is tried first (without certificate checks) and plain HTTP is used if the server
does not speak TLS. The proxy the environment names is used (see :mod:`.proxy`). A 401
answers with a challenge; the client meets it (basic or a bearer token for the scopes
asked) once and repeats the request. An identity token (docker's ``<token>`` login) is
traded for a bearer token as docker does it, by an OAuth2 form POST to the realm
(``grant_type=refresh_token``); basic auth has no way to use one. Connection failures,
429 and 5xx answers are retried with backoff when the request can be repeated; a
proxy's failure is not. A redirect is followed (at most :data:`MAX_REDIRECTS` times, to
HTTP(S) URLs only) without the registry's credentials unless it stays on the registry.

A body nobody wants (a redirect's, a 401's, a retried answer's) is read only when it is
small (see :func:`.answers.discard`); a larger one costs its connection instead, so a
hostile server cannot make vmbuild read or hold much. :meth:`Client.interrupt` wakes every
thread blocked on one of the client's sockets (Ctrl-C while downloads run in threads).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import BinaryIO

from vmbuild.errors import RegistryError
from vmbuild.registry.answers import (
    Response,
    discard,
    origin_of,
    printable,
    read_bounded,
    registry_message,
    retry_after,
    shown,
)
from vmbuild.registry.auth import Challenge, Credentials, parse_challenge, token_request
from vmbuild.registry.auth import token_from_response as _token
from vmbuild.registry.proxy import ProxyError, proxy_for
from vmbuild.registry.reference import LOCAL_HOSTS

log = logging.getLogger("vmbuild")

Body = bytes | Callable[[], BinaryIO] | None
RETRIES = 4
BACKOFF = 0.5
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BODY = 1 << 20
USER_AGENT = "vmbuild/0.1"


class Interrupted(Exception):
    """The request was stopped by :meth:`Client.interrupt`."""


class Client:
    """Requests to the registry at ``host`` (``host[:port]``) on behalf of one user."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        tls_verify: bool = True,
        timeout: float = 60.0,
    ):
        self.host = host
        self.credentials = credentials
        self.tls_verify = tls_verify
        self.timeout = timeout
        hostname = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        self.local = hostname in LOCAL_HOSTS
        self._scheme: str | None = None if (self.local or not tls_verify) else "https"
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._pool: dict[tuple[int, str], http.client.HTTPConnection] = {}
        self._stop = threading.Event()
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._scheme_lock = threading.Lock()  # one thread finds the scheme, others wait

    # -- connections -------------------------------------------------------------------

    def _context(self, netloc: str) -> ssl.SSLContext:
        # Like docker, a server on this machine is trusted without certificate checks.
        # One context of each kind per client: loading the CA store costs ~0.1 s, and a
        # context that checks nothing needs none.
        local = urllib.parse.urlsplit(f"//{netloc}").hostname in LOCAL_HOSTS
        verify = self.tls_verify and not local
        with self._lock:
            ctx = self._contexts.get(verify)
            if ctx is None:
                if verify:
                    ctx = ssl.create_default_context()
                else:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._contexts[verify] = ctx
        return ctx

    def _conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (threading.get_ident(), f"{scheme}://{netloc}")
        with self._lock:
            conn = self._pool.get(key)
        if conn is None:
            proxy = proxy_for(scheme, netloc)
            if proxy is not None and scheme == "https":
                conn = proxy.tunnel(netloc, timeout=self.timeout, context=self._context(netloc))
            elif proxy is not None:
                conn = proxy.forward(netloc, timeout=self.timeout)
            elif scheme == "https":
                conn = http.client.HTTPSConnection(
                    netloc, timeout=self.timeout, context=self._context(netloc), blocksize=1 << 20
                )
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=1 << 20)
            conn.response_class = Response
            with self._lock:
                self._pool[key] = conn
        return conn

    def interrupt(self) -> None:
        """Make every request of every thread stop soon: sockets are shut down (a blocked
        read returns), and new requests and retry waits raise :class:`Interrupted`."""
        self._stop.set()
        with self._lock:
            conns = list(self._pool.values())
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                # The plain socket's shutdown, also under TLS: it only wakes the reader.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def resume(self) -> None:
        """Allow requests again after :meth:`interrupt` (interrupted connections go)."""
        self.close()
        self._stop.clear()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Interrupted()

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Interrupted()

    def reset(self) -> None:
        """Close this thread's connections (after a response was abandoned half read)."""
        me = threading.get_ident()
        with self._lock:
            mine = [k for k in self._pool if k[0] == me]
            conns = [self._pool.pop(k) for k in mine]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        """Close every connection of every thread (the client can still be used)."""
        with self._lock:
            conns = list(self._pool.values())
            self._pool.clear()
        for conn in conns:
            conn.close()

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Body
    ) -> http.client.HTTPResponse:
        self._check_stop()
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._conn(parts.scheme, parts.netloc)
        data = body() if callable(body) else body
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            if isinstance(resp, Response):
                resp.conn = conn
            return resp
        except BaseException:
            conn.close()
            raise
        finally:
            if data is not None and not isinstance(data, bytes):
                data.close()

    def base(self) -> str:
        """``scheme://host`` of the registry, deciding the scheme on first use."""
        if self._scheme is None:
            with self._scheme_lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        try:
            resp = self._send("GET", f"https://{self.host}/v2/", self._headers(), None)
            discard(resp)
            return "https"
        except (ssl.SSLError, ConnectionError, http.client.HTTPException) as exc:
            log.debug("%s: no TLS (%s); using plain HTTP", self.host, exc)
            self.reset()
            return "http"
        except OSError as exc:
            raise RegistryError(f"cannot reach registry {self.host}: {exc}", _NET) from exc

    # -- authentication ----------------------------------------------------------------

    def _headers(self, scope: str = "") -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        with self._lock:
            token = self._tokens.get(scope) if self._bearer else None
            basic = self._basic
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif basic and self.credentials:
            headers["Authorization"] = self.credentials.basic_header()
        return headers

    def _authenticate(self, header: str | None, scope: str, what: str) -> None:
        challenge = parse_challenge(header or "")
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise RegistryError(
                f"{what}: {self.host} wants authentication ({printable(header or '')[:200]})",
                _LOGIN,
            )
        if challenge.scheme == "basic":
            if not self.credentials:
                raise RegistryError(f"{what}: {self.host} requires a login", _LOGIN)
            if self.credentials.identity_token:
                raise RegistryError(
                    f"{what}: {self.host} wants basic auth, which cannot use "
                    f"{self.credentials.describe()} (only token auth can)",
                    f"log in to {self.host} with a user name and password",
                )
            with self._lock:
                self._basic = True
            return
        token = self._fetch_token(challenge, scope, what)
        with self._lock:
            self._bearer = challenge
            self._tokens[scope] = token

    def _refused(self, what: str) -> RegistryError:
        if self.credentials:
            hint = "wrong user or password: fix ~/.docker/config.json or $REGISTRY_AUTH_FILE"
            if self.credentials.source or self.credentials.identity_token:
                hint = f"log in to {self.host} again"
            return RegistryError(f"{what}: {self.host} refused {self.credentials.describe()}", hint)
        return RegistryError(
            f"{what}: {self.host} requires a login (or the repository does not exist)", _LOGIN
        )

    def _fetch_token(self, challenge: Challenge, scope: str, what: str) -> str:
        realm = challenge.params.get("realm", "")
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise RegistryError(f"{what}: {self.host} names a bad token realm {realm!r}", _NET)
        if parts.scheme == "http" and self.tls_verify and parts.hostname not in LOCAL_HOSTS:
            raise RegistryError(
                f"{what}: token realm {shown(realm)} is not HTTPS",
                "set tlsVerify = false to allow it",
            )
        method, url, headers, form = token_request(challenge, scope, realm, self.credentials)
        headers["User-Agent"] = USER_AGENT
        try:
            resp = self._send(method, url, headers, form)
            body = read_bounded(resp, MAX_TOKEN_BODY + 1)
        except ProxyError as exc:
            raise RegistryError(
                f"{what}: token server {shown(realm)}: {exc.message}", exc.hint
            ) from exc
        except OSError as exc:
            raise RegistryError(
                f"{what}: cannot reach token server {shown(realm)}: {exc}", _NET
            ) from exc
        if resp.status in (401, 403):
            raise self._refused(what)
        if resp.status != 200:
            msg = registry_message(body)
            raise RegistryError(
                f"{what}: token server {shown(realm)} said {resp.status} {msg}", _NET
            )
        if len(body) > MAX_TOKEN_BODY:
            raise RegistryError(f"{what}: token server {shown(realm)} sent more than 1 MiB", _NET)
        return _token(body, shown(realm))

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        what: str,
        expect: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        body: Body = None,
    ) -> http.client.HTTPResponse:
        """Send a request (``path`` under the registry, or an absolute URL) and return the
        response, whose status is in ``expect``; its body is for the caller to read."""
        url = start = path if "://" in path else self.base() + path
        origin = self.base()
        authed = False
        attempt = redirects = 0
        while True:
            ours = origin_of(url) == origin  # only the registry gets its credentials
            hdrs = self._headers(scope) if ours else {"User-Agent": USER_AGENT}
            hdrs.update(headers or {})
            try:
                resp = self._send(method, url, hdrs, body)
            except ProxyError as exc:
                raise RegistryError(f"{what}: {exc.message}", exc.hint) from exc
            except (OSError, http.client.HTTPException) as exc:
                attempt += 1
                if attempt >= RETRIES or isinstance(exc, ConnectionRefusedError | socket.gaierror):
                    raise self._unreachable(what, url, redirects, exc) from exc
                log.debug("%s: %s; retrying", what, exc)
                self._sleep(BACKOFF * 2 ** (attempt - 1))
                continue
            status = resp.status
            if status == 401 and ours:
                header = resp.getheader("WWW-Authenticate")
                discard(resp)
                if authed or hdrs.get("Authorization", "").startswith("Basic"):
                    raise self._refused(what)
                self._authenticate(header, scope, what)
                authed = True
                continue
            if status in REDIRECTS and resp.getheader("Location"):
                discard(resp)
                location = resp.getheader("Location") or ""
                url = self._redirect(start, url, location, redirects, what)
                redirects += 1
                continue
            if status in RETRY_STATUS and attempt + 1 < RETRIES:
                discard(resp)
                attempt += 1
                delay = retry_after(resp) or BACKOFF * 2 ** (attempt - 1)
                log.debug("%s: HTTP %d; retrying in %.1f s", what, status, delay)
                self._sleep(delay)
                continue
            if status not in expect:
                raise self.error(resp, what, url if redirects else None)
            return resp

    def head(
        self, path: str, *, scope: str, what: str, accept: str | None = None
    ) -> http.client.HTTPResponse:
        """A HEAD of ``path`` answered 200 (there) or 404 (not there), any other answer
        an error; the status and headers are the answer (the body is discarded)."""
        headers = {"Accept": accept} if accept else None
        resp = self.request(
            "HEAD", path, scope=scope, what=what, expect=(200, 404), headers=headers
        )
        discard(resp)
        return resp

    def _redirect(self, start: str, url: str, location: str, redirects: int, what: str) -> str:
        target = urllib.parse.urljoin(url, location)
        parts = urllib.parse.urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(
                f"{what}: {shown(url)} redirects to {location[:200]!r}, not an HTTP(S) URL",
                "the registry is misconfigured",
            )
        if redirects >= MAX_REDIRECTS:
            raise RegistryError(
                f"{what}: too many redirects from {shown(start)} (more than "
                f"{MAX_REDIRECTS}; the last to {shown(target)})",
                "the registry or its storage redirects in a loop",
            )
        return target

    def _unreachable(self, what: str, url: str, redirects: int, exc: Exception) -> RegistryError:
        if redirects:
            return RegistryError(
                f"{what}: cannot reach the redirect target {shown(url)}: {exc}",
                "the registry sent it there; its storage may be down or misconfigured",
            )
        return RegistryError(f"{what}: cannot reach {self.host}: {exc}", _NET)

    def error(
        self, resp: http.client.HTTPResponse, what: str, redirected: str | None = None
    ) -> RegistryError:
        """The error for an unexpected answer (``redirected``: the URL it came from, when
        that is where the registry sent us, not the registry)."""
        body = read_bounded(resp, MAX_ERROR_BODY)
        msg = registry_message(body) or printable(resp.reason)
        if redirected is not None:
            return RegistryError(
                f"{what}: the redirect target {shown(redirected)} answered {resp.status} {msg}",
                "the registry sent it there; its storage may be down or misconfigured",
            )
        if resp.status == 401:
            return self._refused(what)
        if resp.status == 403:
            return RegistryError(f"{what}: {self.host} denied access: {msg}", _LOGIN)
        if resp.status == 404:
            return RegistryError(
                f"{what}: {msg or 'not found'}", "check the image name, tag and digest"
            )
        return RegistryError(f"{what}: {self.host} answered {resp.status} {msg}", _NET)


_NET = "check the registry address, the network and tlsVerify"
_LOGIN = "add credentials for the registry to ~/.docker/config.json or $REGISTRY_AUTH_FILE"
