"""The HTTP stack against small servers on 127.0.0.1: what it retries and how often,
where credentials go on a redirect, and how much of a body it reads."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from typing import BinaryIO

import pytest

from tests.support import stubregistry as sr
from vmbuild.net.http import Http, Interrupted, Unreachable


def test_retries_busy_answers_and_reopens_the_body() -> None:
    """429 and 503 are retried (Retry-After honoured), a body given as a function is
    opened anew for each try, and after RETRIES tries the last answer is the answer."""
    calls: list[bytes] = []

    def busy_twice(h: sr.Stub) -> None:
        calls.append(h.rfile.read(int(h.headers["Content-Length"])))
        status = 429 if len(calls) == 1 else 503 if len(calls) == 2 else 201
        h._send(status, b"", {"Retry-After": "0"} if status == 429 else None)

    opened: list[int] = []

    def body() -> BinaryIO:
        opened.append(1)
        return io.BytesIO(b"data")

    with sr.serve({"/up": busy_twice, "/down": sr.answer(503, b"no")}) as host:
        http = Http()
        headers = {"Content-Length": "4"}
        resp = http.request("PUT", f"http://{host}/up", headers=headers, body=body, backoff=0.01)
        assert resp.status == 201 and calls == [b"data"] * 3 and len(opened) == 3
        resp = http.request("GET", f"http://{host}/down", retries=3, backoff=0.01)
        assert (resp.status, resp.read(10)) == (503, b"no")
        http.close()


def test_refused_connection_is_not_retried() -> None:
    with sr.serve({}) as dead:
        pass
    with pytest.raises(Unreachable, match=r"cannot reach 127\.0\.0\.1:.*refused"):
        Http().request("GET", f"http://{dead}/x", backoff=10)  # a retry would wait 10 s


def test_credentials_stay_with_their_origin() -> None:
    """Authorization and Cookie go along a redirect on the same origin, not to another."""
    got: dict[str, tuple[str | None, str | None]] = {}

    def record(name: str) -> sr.Route:
        def route(h: sr.Stub) -> None:
            got[name] = (h.headers.get("Authorization"), h.headers.get("Cookie"))
            h._send(200, b"ok")

        return route

    with sr.serve({"/there": record("other")}) as other:
        routes = {
            "/start": sr.redirect("/same"),
            "/same": sr.redirect(f"http://{other}/there"),
        }
        routes["/seen"] = record("same")
        with sr.serve(routes) as host:
            http = Http()
            secret = {"Authorization": "Bearer T", "Cookie": "c=1"}
            resp = http.request("GET", f"http://{host}/start", headers=secret)
            assert resp.read(10) == b"ok" and resp.redirects == 2
            assert resp.url == f"http://{other}/there"
            assert got == {"other": (None, None)}
            routes["/same"] = sr.redirect("/seen")
            http.request("GET", f"http://{host}/start", headers=secret).read(10)
            assert got["same"] == ("Bearer T", "c=1")
            http.close()


def test_a_body_is_read_within_its_bound() -> None:
    """stream() reads at most one byte past the caller's bound, then hangs up; an
    unwanted large body is not read at all."""
    sent: list[int] = []
    with sr.serve({"/big": sr.big(200, 200 << 20, sent=sent)}) as host:
        http = Http()
        resp = http.request("GET", f"http://{host}/big", headers={"Range": "bytes=0-"})
        pieces = list(resp.stream(3 << 20, piece=1 << 20))
        assert sum(map(len, pieces)) == (3 << 20) + 1 and max(map(len, pieces)) <= 1 << 20
        assert resp.isclosed()
        http.close()
    assert sr.taken(sent) and sent[0] < 40 << 20, sent  # what the kernel's buffers took


def test_interrupt_wakes_a_read_of_an_answer_that_closes_its_connection() -> None:
    """An answer with ``Connection: close`` (HTTP/1.0 servers) takes the socket from its
    connection; interrupt() still finds it, and later requests raise Interrupted."""
    started = threading.Event()

    def drip(h: sr.Stub) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        with contextlib.suppress(OSError):
            for _ in range(20):
                h.wfile.write(b"z")
                h.wfile.flush()
                started.set()
                time.sleep(0.5)

    with sr.serve({"/slow": drip}) as host:
        http = Http()
        got: list[BaseException | bytes] = []

        def read() -> None:
            try:
                got.append(http.request("GET", f"http://{host}/slow").read(100))
            except BaseException as exc:
                got.append(exc)

        worker = threading.Thread(target=read)
        worker.start()
        assert started.wait(10)
        began = time.monotonic()
        http.interrupt()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - began < 1, got
        with pytest.raises(Interrupted):
            http.request("GET", f"http://{host}/slow")
        http.close()
