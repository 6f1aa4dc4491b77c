"""HTTP to one registry: its scheme, authentication and errors, on :mod:`vmbuild.net.http`.

The stack does connections, the proxy, retries, redirects, bounded bodies and interrupts
(:class:`~vmbuild.net.http.Http`); what is the registry's is here. HTTPS is used unless
the registry is on this machine (localhost, 127.0.0.1, ::1) or ``tls_verify`` is off;
then HTTPS is tried first (a server on this machine is trusted without certificate
checks) and plain HTTP is used if the server does not speak TLS. A 401 from the registry
answers with a challenge; the client meets it (basic or a bearer token for the scopes
asked) once and repeats the request. An identity token (docker's ``<token>`` login) is
traded for a bearer token as docker does it, by an OAuth2 form POST to the realm
(``grant_type=refresh_token``); basic auth has no way to use one. The registry's
credentials go only to the registry (the stack drops them on a redirect elsewhere).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Mapping

from vmbuild.errors import RegistryError, printable
from vmbuild.net.http import (
    FAILURES,
    Body,
    Http,
    Interrupted,
    RequestFailed,
    Response,
    Unreachable,
    origin_of,
    shown,
)
from vmbuild.net.proxy import NetError, ProxyFailed
from vmbuild.registry.auth import Challenge, Credentials, parse_challenge, token_request
from vmbuild.registry.auth import token_from_response as _token
from vmbuild.registry.reference import LOCAL_HOSTS

__all__ = ["Body", "Client", "Interrupted", "Response"]

log = logging.getLogger("vmbuild")

BACKOFF = 0.5  # the stack's, here where tests shorten it
MAX_ERROR_BODY = 64 << 10
MAX_TOKEN_BODY = 1 << 20


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
        self.http = Http(timeout=timeout, tls_verify=tls_verify, trust_local=True)
        self._scheme: str | None = None if (self.local or not tls_verify) else "https"
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[str, str] = {}
        self._scheme_lock = threading.Lock()  # one thread finds the scheme, others wait

    # -- connections -------------------------------------------------------------------

    def interrupt(self) -> None:
        """Make every request of every thread stop soon (see :meth:`Http.interrupt`)."""
        self.http.interrupt()

    def resume(self) -> None:
        """Allow requests again after :meth:`interrupt` (interrupted connections go)."""
        self.http.resume()

    def reset(self) -> None:
        """Hang up on this thread's answers not read to the end (one abandoned half read)."""
        self.http.reset()

    def close(self) -> None:
        """Close every connection of every thread (the client can still be used)."""
        self.http.close()

    def base(self) -> str:
        """``scheme://host`` of the registry, deciding the scheme on first use."""
        if self._scheme is None:
            with self._scheme_lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        try:
            self.http.send("GET", f"https://{self.host}/v2/", self._headers(), None).discard()
            return "https"
        except (RequestFailed, ProxyFailed) as exc:
            root = exc.reason if isinstance(exc, RequestFailed) else exc
            fallback = ssl.SSLError | ConnectionError | http.client.HTTPException | ProxyFailed
            if not isinstance(root, fallback):
                raise RegistryError(f"cannot reach registry {self.host}: {root}", _NET) from exc
            log.debug("%s: no TLS (%s); using plain HTTP", self.host, root)
            self.reset()
            return "http"

    # -- authentication ----------------------------------------------------------------

    def _headers(self, scope: str = "") -> dict[str, str]:
        headers: dict[str, str] = {}
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
        try:
            resp = self.http.request(method, url, headers=headers, body=form, backoff=BACKOFF)
            body = resp.read(MAX_TOKEN_BODY + 1)
            resp.discard()
        except Unreachable as exc:
            raise RegistryError(
                f"{what}: cannot reach token server {shown(realm)}: {exc.reason}", _NET
            ) from exc
        except NetError as exc:
            raise RegistryError(
                f"{what}: token server {shown(realm)}: {exc.message}", exc.hint
            ) from exc
        except FAILURES as exc:  # the body's read
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
    ) -> Response:
        """Send a request (``path`` under the registry, or an absolute URL) and return the
        response, whose status is in ``expect``; its body is for the caller to read."""
        url = path if "://" in path else self.base() + path
        origin = self.base()
        authed = False
        while True:
            # Only the registry gets its credentials (the stack drops them on the way out).
            hdrs = self._headers(scope) if origin_of(url) == origin else {}
            hdrs.update(headers or {})
            try:
                resp = self.http.request(method, url, headers=hdrs, body=body, backoff=BACKOFF)
            except Unreachable as exc:
                if exc.redirects:
                    raise RegistryError(f"{what}: {exc.message}", _STORAGE) from exc
                raise RegistryError(
                    f"{what}: cannot reach {self.host}: {exc.reason}", _NET
                ) from exc
            except NetError as exc:
                raise RegistryError(f"{what}: {exc.message}", exc.hint) from exc
            if resp.status == 401 and origin_of(resp.url) == origin:
                header = resp.getheader("WWW-Authenticate")
                resp.discard()
                if authed or hdrs.get("Authorization", "").startswith("Basic"):
                    raise self._refused(what)
                self._authenticate(header, scope, what)
                authed = True
                continue
            if resp.status not in expect:
                raise self.error(resp, what)
            return resp

    def head(self, path: str, *, scope: str, what: str, accept: str | None = None) -> Response:
        """A HEAD of ``path`` answered 200 (there) or 404 (not there), any other answer
        an error; the status and headers are the answer (the body is discarded)."""
        headers = {"Accept": accept} if accept else None
        resp = self.request(
            "HEAD", path, scope=scope, what=what, expect=(200, 404), headers=headers
        )
        resp.discard()
        return resp

    def error(self, resp: Response, what: str) -> RegistryError:
        """The error for an unexpected answer (from the registry, or from where the
        registry redirected us)."""
        body = resp.read(MAX_ERROR_BODY)
        resp.discard()
        msg = registry_message(body) or resp.reason
        if resp.redirects:
            return RegistryError(
                f"{what}: the redirect target {shown(resp.url)} answered {resp.status} {msg}",
                _STORAGE,
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


def registry_message(body: bytes) -> str:
    """The registry's error text (``errors[].message`` and code), one line."""
    try:
        errors = json.loads(body).get("errors") or []
        parts = []
        for e in errors:
            msg, code = str(e.get("message") or "").strip(), str(e.get("code") or "")
            parts.append(f"{msg} ({code})" if msg and code else msg or code)
        text = "; ".join(p for p in parts if p)
    except (ValueError, AttributeError, TypeError):
        text = body[:200].decode(errors="replace").strip()
    return printable(" ".join(text.split())[:300])


_NET = "check the registry address, the network and tlsVerify"
_LOGIN = "add credentials for the registry to ~/.docker/config.json or $REGISTRY_AUTH_FILE"
_STORAGE = "the registry sent it there; its storage may be down or misconfigured"
