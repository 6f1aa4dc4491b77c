"""What is done with an HTTP answer from a registry: its body read within bounds or not
at all, its error text made one printable line, its URL shown without secrets."""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse

from vmbuild.registry.reference import printable

DRAIN = 64 << 10  # an unwanted body up to this size is read (the connection kept)

__all__ = ["DRAIN", "Response", "discard", "origin_of", "printable", "read_bounded"]
__all__ += ["registry_message", "retry_after", "shown"]


class Response(http.client.HTTPResponse):
    """A response that knows its connection, so an unread body can cost just that."""

    conn: http.client.HTTPConnection | None = None


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def shown(url: str) -> str:
    """``url`` for a message: without its query (a redirect's may hold a signature)."""
    parts = urllib.parse.urlsplit(url)
    return printable(f"{parts.scheme}://{parts.netloc}{parts.path}"[:300])


def discard(resp: http.client.HTTPResponse) -> None:
    """Done with ``resp`` whatever its body: a small body is read (the connection can be
    used again), a large or unknown one is not; its connection is closed instead."""
    if resp.isclosed():
        return
    if resp.length is not None and resp.length <= DRAIN:
        with contextlib.suppress(OSError, http.client.HTTPException):
            resp.read()
    elif resp.chunked:
        with contextlib.suppress(OSError, http.client.HTTPException):
            resp.read(DRAIN)
    if not resp.isclosed():
        resp.close()
        conn = resp.conn if isinstance(resp, Response) else None
        if conn is not None:
            conn.close()  # it reconnects when next used


def read_bounded(resp: http.client.HTTPResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; the connection is closed if more is left."""
    body = resp.read(limit)
    discard(resp)
    return body


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


def retry_after(resp: http.client.HTTPResponse) -> float | None:
    value = resp.getheader("Retry-After")
    try:
        return min(float(value), 30.0) if value else None
    except ValueError:
        return None
