"""The streaming layer scan (member names, links, tar structure) and the client's
handling of hostile answers (huge unwanted bodies, redirect loops, dead targets,
Ctrl-C while a read blocks), against small servers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import stubregistry as sr
from tests.support.proxy import make_cert
from vmbuild.errors import ImageError, RegistryError, VmbuildError
from vmbuild.oci.tarread import _number
from vmbuild.registry.auth import Credentials
from vmbuild.registry.client import Client, Interrupted
from vmbuild.registry.inflate import CachedBlob
from vmbuild.registry.layerscan import LayerScan

Member = tuple[str, str, str]  # (name, type: f d l h, content or link target)


def tar_of(members: list[Member], fmt: int = tarfile.PAX_FORMAT, end: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, value in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1
            data = b""
            if kind == "f":
                data = value.encode()
                ti.size = len(data)
            elif kind == "d":
                ti.type = tarfile.DIRTYPE
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, value
            else:
                ti.type, ti.linkname = tarfile.LNKTYPE, value
            tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    if not end:  # drop the end-of-archive blocks and tarfile's record padding
        last = raw.rstrip(b"\0")
        raw = raw[: -(-len(last) // 512) * 512]
    return raw


def scan(data: bytes, step: int | None = None) -> VmbuildError | None:
    s = LayerScan("layer L")
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        s.feed(data[i : i + step])
    return s.finish()


FINE: list[Member] = [
    ("etc", "d", ""),
    ("etc/hostname", "f", "box\n"),
    ("./usr/lib/" + "long-directory-name/" * 8 + "file", "f", "x" * 700),
    ("bin/sh", "l", "/usr/bin/dash"),
    ("lib", "l", "usr/lib"),
    ("usr/lib/link", "l", "../../etc/hostname"),
    ("etc/hard", "h", "etc/hostname"),
    ("etc/.wh.gone", "f", ""),
    ("n\u00e4me-\u00fc", "f", "utf-8 name"),
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("step", [None, 1, 7, 512, 1000])
def test_a_fine_layer_passes_in_any_pieces(fmt: int, step: int | None) -> None:
    members = FINE if fmt != tarfile.USTAR_FORMAT else FINE[:-1]  # ustar: ASCII only
    assert scan(tar_of(members, fmt), step) is None


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../x", "f", "a")], "climbs out with '..'"),
        ([("a/../../x", "f", "a")], "climbs out with '..'"),
        ([("/etc/passwd", "f", "a")], "unsafe absolute path"),
        ([("d/" * 60 + "../" * 70 + "x", "f", "a")], "climbs out"),  # a PAX / GNU long name
        ([("a", "l", "../../etc")], "points outside the image"),
        ([("a/b", "l", "../../x")], "points outside the image"),
        ([("a", "h", "nothere")], "hard link a -> nothere has no target"),
        ([("a", "h", "../etc/passwd")], "climbs out"),
        ([("d", "d", ""), ("a", "h", "d")], "has no target"),
        ([("a", "h", "b"), ("b", "f", "")], None),  # target later in the layer: fine
        ([("a", "l", "/abs/ok")], None),
        ([("ok", "f", "1"), ("x/../../y", "d", "")], "climbs out"),
        ([("usr/share/a\n/etc/shadow", "f", "1")], "holds a control character"),
        ([("a\x1b[2J", "f", "1")], "holds a control character"),
    ],
)
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_unsafe_names_are_found(members: list[Member], message: str | None, fmt: int) -> None:
    problem = scan(tar_of(members, fmt), 300)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem.message, problem
        assert problem.message.startswith("layer L: ") and "\n" not in problem.message


def test_a_pax_path_overrides_a_harmless_ustar_name() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("harmless")
        ti.pax_headers = {"path": "../../evil"}
        tar.addfile(ti, io.BytesIO(b""))
    problem = scan(buf.getvalue())
    assert problem is not None and "'../../evil'" in problem.message


def test_structure_errors() -> None:
    good = tar_of([("a", "f", "x" * 2000), ("b", "f", "y" * 10)])
    empty = scan(b"")  # as tarfile, which reads a base layer later, takes it
    assert empty is not None and "not a readable tar (it is empty)" in empty.message
    assert scan(tar_of([("a", "f", "1"), ("b", "f", "2")], end=False)) is None
    not_tar = scan(os.urandom(4096))
    assert not_tar is not None and "not a readable tar" in not_tar.message
    # The second member's header (after PAX-less ustar header + 2000 bytes of data).
    second = good.index(b"b\0")
    broken = good[:second] + b"c" + good[second + 1 :]
    bad = scan(broken)
    assert bad is not None and f"corrupt tar header at byte {second}" in bad.message
    cut = scan(good[:700])
    assert cut is not None and "truncated" in cut.message
    cut = scan(good[:100])
    assert cut is not None and "truncated" in cut.message
    # After the end-of-archive block nothing is read: trailing junk is not a member.
    assert scan(good + os.urandom(1000)) is None


def test_base256_size() -> None:
    assert _number(b"\x80" + (12345).to_bytes(11, "big")) == 12345
    assert _number(b"0000017\0") == 15
    with pytest.raises(ValueError):
        _number(b"\xff" * 12)


# -- the client against hostile answers ------------------------------------------------


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmbuild.registry.client.BACKOFF", 0.01)


def _get(client: Client, path: str) -> bytes:
    resp = client.request("GET", path, scope="repository:x/y:pull", what="t")
    return resp.read()


@pytest.mark.parametrize("status", [307, 503, 401])
def test_unwanted_bodies_are_not_read(status: int, fast_retries: None) -> None:
    """A 200 MB body the client does not want: it hangs up instead of reading it."""
    calls = {"n": 0}
    sent: list[int] = []
    headers = {
        307: {"Location": "/real"},
        503: {},
        401: {"WWW-Authenticate": 'Basic realm="r"'},
    }[status]

    def flaky(h: sr.Stub) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            sr.big(status, 200 << 20, headers, sent)(h)
        else:
            h._send(200, b"data")

    routes = {"/v2/": sr.answer(200, b"{}"), "/blob": flaky, "/real": sr.answer(200, b"data")}
    with sr.serve(routes) as host:
        client = Client(host, credentials=Credentials("u", "p"))
        assert _get(client, "/blob") == b"data"
        client.close()
    assert sr.taken(sent) and sent[0] < 32 << 20, sent  # what the kernel's buffers took, no more


def test_redirect_loop_and_dead_targets() -> None:
    with sr.serve({}) as dead_host:
        pass  # its port is now closed
    routes = {
        "/v2/": sr.answer(200, b"{}"),
        "/a": sr.redirect("/b"),
        "/b": sr.redirect("/a?sig=secret"),
        "/dead": sr.redirect(f"http://{dead_host}/blob"),
        "/gone": sr.redirect("/nothing"),
        "/ftp": sr.redirect("file:///etc/passwd"),
    }
    with sr.serve(routes) as host:
        client = Client(host)
        with pytest.raises(RegistryError, match="too many redirects") as err:
            _get(client, "/a")
        assert f"http://{host}/a" in err.value.message and "secret" not in err.value.message
        with pytest.raises(RegistryError, match="cannot reach the redirect target") as err:
            _get(client, "/dead")
        assert f"http://{dead_host}/blob" in err.value.message
        with pytest.raises(RegistryError, match=r"redirect target .*/nothing answered 404"):
            _get(client, "/gone")
        with pytest.raises(RegistryError, match="not an HTTP"):
            _get(client, "/ftp")
        client.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_interrupt_wakes_a_blocked_read(tls: bool, tmp_path: Path) -> None:
    started = threading.Event()
    routes = {"/v2/": sr.answer(200, b"{}"), "/slow": sr.drip(b"z" * 100, started, 10)}
    with sr.serve(routes, make_cert(tmp_path, "localhost") if tls else None) as host:
        client = Client(host)
        assert client.base().startswith("https://" if tls else "http://")
        got: list[BaseException | bytes] = []

        def read() -> None:
            try:
                got.append(_get(client, "/slow"))
            except BaseException as exc:
                got.append(exc)

        worker = threading.Thread(target=read)
        worker.start()
        assert started.wait(10)
        began = time.monotonic()
        client.interrupt()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - began < 1
        assert isinstance(got[0], OSError | http.client.HTTPException | Interrupted), got
        with pytest.raises(Interrupted):
            _get(client, "/v2/")
        client.resume()
        assert _get(client, "/v2/") == b"{}"
        client.close()


def test_what_a_server_or_image_chose_is_printed_safely() -> None:
    """Terminal escape sequences in a member name or a registry's error text."""
    problem = scan(tar_of([("a", "l", "../../\x1b[2J")]))
    assert problem is not None and "\x1b" not in problem.message and "?[2J" in problem.message
    problem = scan(tar_of([("\x1b]0;owned\x07", "h", "nothere")]))
    assert problem is not None and "\x1b" not in problem.message
    body = b'{"errors":[{"code":"DENIED","message":"\\u001b[2Jgo away"}]}'
    with sr.serve({"/v2/": sr.answer(200, b"{}"), "/x": sr.answer(418, body)}) as host:
        client = Client(host)
        with pytest.raises(RegistryError) as err:
            _get(client, "/x")
        client.close()
    assert "?[2Jgo away (DENIED)" in err.value.message and "\x1b" not in err.value.message


@pytest.mark.parametrize("unpack", [True, False], ids=["docker-archive", "oci-archive"])
def test_a_blob_is_verified_before_its_names_are_blamed(
    unpack: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    plain = tar_of([("ok", "f", "1"), ("../up", "f", "2")])
    blob = gzip.compress(plain, mtime=0)
    path = tmp_path / "blob"
    path.write_bytes(blob)
    good = CachedBlob(path, sr.sha(blob), "gzip", len(blob), len(plain), unpack, scan=True)
    with pytest.raises(ImageError, match=r"unsafe path '\.\./up'"):
        good.copy_to(io.BytesIO())
    wrong = dataclasses.replace(good, digest="sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="changed on disk"):
        wrong.copy_to(io.BytesIO())
    assert not path.exists()  # a cached copy that changed is removed
