"""registry/repushfast: the before-argparse re-push reads the command line, the record,
the auth file and the registry's answer exactly as the full path does, or declines."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmbuild.oci.names import PATH_RE, TAG_RE
from vmbuild.registry import auth, client, repush, repushfast
from vmbuild.registry.reference import parse_docker_url

DIGEST = "sha256:" + "d" * 64
TWICE = "Docker-Content-Digest: sha256:" + "e" * 64


@pytest.mark.parametrize(
    ("argv", "dest", "quiet", "as_json"),
    [
        (["push", "a.tar", "docker://127.0.0.1:5000/app:1"], "127.0.0.1:5000/app:1", False, False),
        (["-q", "push", "a.tar", "docker://localhost/a/b"], "localhost/a/b:latest", True, False),
        (["push", "--quiet", "--json", "x", "docker://[::1]:80/a:t"], "[::1]:80/a:t", True, True),
        (["push", "x", "docker://[::1]/a", "--tls-verify=False"], "[::1]/a:latest", False, False),
    ],
)
def test_the_shape_it_answers(argv: list[str], dest: str, quiet: bool, as_json: bool) -> None:
    sh = repushfast.shape(argv)
    assert sh is not None
    assert (sh.dest, sh.quiet, sh.json) == (dest, quiet, as_json)
    assert sh.dest == str(parse_docker_url(argv[-1] if "://" in argv[-1] else argv[-2]))


@pytest.mark.parametrize(
    "argv",
    [
        ["push", "a.tar"],
        ["push", "a.tar", "docker://127.0.0.1:5000/app:1", "extra"],
        ["--debug", "push", "a.tar", "docker://127.0.0.1/app"],
        ["push", "-v", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--tls-verify", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--tls-verify=maybe", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--js", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--compress", "zstd", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--digestfile", "d", "a.tar", "docker://127.0.0.1/app"],
        ["push", "--", "a.tar", "docker://127.0.0.1/app"],
        ["push", "", "docker://127.0.0.1/app"],
        ["prefetch", "a.tar", "docker://127.0.0.1/app"],
        ["push", "a.tar", "docker://registry.example:5000/app:1"],  # not on this machine
        ["push", "a.tar", "docker://LOCALHOST/app"],
        ["push", "a.tar", "docker://localhost.localdomain/app"],
        ["push", "a.tar", "docker://127.0.0.1:/app"],
        ["push", "a.tar", "docker://127.0.0.1:0/app"],
        ["push", "a.tar", "docker://127.0.0.1:99999/app"],
        ["push", "a.tar", "docker://127.0.0.1/App"],
        ["push", "a.tar", "docker://127.0.0.1/app:-1"],
        ["push", "a.tar", "docker://127.0.0.1/app:1\n"],
        ["push", "a.tar", "docker://127.0.0.1/app@" + DIGEST],
        ["push", "a.tar", "127.0.0.1/app:1"],
        ["push", "a.tar", "docker://127.0.0.1"],
    ],
)
def test_any_other_shape_is_declined(argv: list[str]) -> None:
    assert repushfast.shape(argv) is None


def test_names_and_tags_follow_the_regexes() -> None:
    rng = random.Random(15)
    for alphabet in ("ab0Z._-/_-:", "a0._-/\n "):
        for _ in range(20000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
            assert repushfast.is_path(text) == bool(PATH_RE.match(text)) or "\n" in text, text
            assert not repushfast.is_path(text) or PATH_RE.match(text), text
            assert repushfast.is_tag(text) == bool(TAG_RE.match(text)) or "\n" in text, text
            assert not repushfast.is_tag(text) or TAG_RE.match(text), text
    assert repushfast.is_tag("a" * 128) and not repushfast.is_tag("a" * 129)


def test_constants_are_the_full_paths() -> None:
    assert repushfast.FORMAT == repush.FORMAT
    assert repushfast.USER_AGENT == client.USER_AGENT
    assert repushfast.MT_OCI_MANIFEST == repush.MT_OCI_MANIFEST
    assert repushfast.MT_DOCKER_MANIFEST == repush.MT_DOCKER_MANIFEST
    assert client.Client("h").timeout == repushfast.TIMEOUT


@pytest.mark.parametrize(
    "env",
    [
        {"VMBUILD_CACHE_DIR": "/c/explicit"},
        {"XDG_CACHE_HOME": "/c/xdg"},
        {"HOME": "/c/home"},
        {"VMBUILD_CACHE_DIR": "", "XDG_CACHE_HOME": "", "HOME": "/c/h2"},
    ],
)
def test_the_record_and_auth_file_are_the_full_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("VMBUILD_CACHE_DIR", "XDG_CACHE_HOME", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    image = tmp_path / "a.tar"
    image.write_bytes(b"x")
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text("{}")
    for img in (image, layout):
        ident = repush.identity(img)
        assert ident is not None
        for compression, level in (("gzip", None), ("zstd", 3)):
            want = str(repush._record(ident, compression, level))
            assert repushfast.record_path(str(img), compression, level) == want
    assert repushfast.record_path(str(tmp_path / "missing")) is None
    assert repushfast._auth_file() == str(auth.auth_file())
    monkeypatch.setenv("DOCKER_CONFIG", "/d/conf")
    assert repushfast._auth_file() == str(auth.auth_file())
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "/d/auth.json")
    assert repushfast._auth_file() == str(auth.auth_file())


HOST = "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("config", "none"),
    [
        (None, True),  # no file
        ({}, True),
        ([], True),
        ({"auths": {"other.example": {"auth": "dTpw"}}}, True),
        ({"auths": {"127.0.0.1:5001": {"auth": "dTpw"}}}, True),
        ({"auths": {HOST: {"auth": "dTpw"}}}, False),
        ({"auths": {f"{HOST}/app": {"auth": "dTpw"}}}, False),
        ({"auths": {f"https://{HOST}/v2/": {"auth": "dTpw"}}}, False),
        ({"auths": {f"http://{HOST}": {}}}, False),  # an entry: the full path reads it
        ({"auths": {HOST: {"auth": "not base64!"}}}, False),  # the full path's error
        ({"credsStore": "pass"}, False),
        ({"credHelpers": {HOST: "pass"}}, False),
        ("{not json", False),
    ],
)
def test_any_login_that_could_apply_declines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: object, none: bool
) -> None:
    file = tmp_path / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(file))
    if config is not None:
        file.write_text(config if isinstance(config, str) else json.dumps(config))
    assert repushfast.no_credentials(HOST) is none
    if none:  # then the full path finds none either
        assert auth.load_credentials(HOST, "app") is None


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes], list[bytes]]]:
    """A one-connection-at-a-time server on 127.0.0.1 (its port): answers[i] is sent
    for the i-th request, whose bytes land in requests."""
    answers: list[bytes] = []
    requests: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                requests.append(data)
                conn.sendall(answers[len(requests) - 1])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, answers, requests
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes its accept (a close alone does not)
    listener.close()
    thread.join(5)
    assert not thread.is_alive()


def _head(port: int, answers: list[bytes], answer: bytes) -> str | None:
    answers.append(answer)
    sh = repushfast.shape(["push", "a", f"docker://127.0.0.1:{port}/app/x:1"])
    assert sh is not None
    return repushfast.head_digest(sh, "application/x-m")


@pytest.mark.parametrize(
    ("answer", "digest"),
    [
        (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n\r\n", DIGEST),
        (f"HTTP/1.0 200 OK\r\ndocker-content-digest:{DIGEST} \r\n\r\n", DIGEST),
        (f"HTTP/1.1 404 Not Found\r\nDocker-Content-Digest: {DIGEST}\r\n\r\n", None),
        ("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n", None),
        (f"HTTP/1.1 307 Moved\r\nLocation: /x\r\nDocker-Content-Digest: {DIGEST}\r\n\r\n", None),
        (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n", None),  # cut short
        ("HTTP/1.1 200 OK\r\n\r\n", None),
        (f"HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\n{TWICE}\r\n\r\n", None),
        ("\x15\x03\x01\x00\x02\x02\x46", None),  # a TLS alert: it speaks TLS
    ],
)
def test_only_a_200_with_one_digest_is_an_answer(
    server: tuple[int, list[bytes], list[bytes]], answer: str, digest: str | None
) -> None:
    port, answers, requests = server
    assert _head(port, answers, answer.encode("latin-1")) == digest
    (request,) = requests
    lines = request.decode().split("\r\n")
    assert lines[0] == "HEAD /v2/app/x/manifests/1 HTTP/1.1"
    assert f"User-Agent: {client.USER_AGENT}" in lines
    assert (
        f"Accept: application/x-m, {repush.MT_OCI_MANIFEST}, {repush.MT_DOCKER_MANIFEST}" in lines
    )


def test_an_unreachable_registry_is_no_answer(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    sh = repushfast.shape(["push", str(tmp_path), f"docker://127.0.0.1:{port}/a"])
    assert sh is not None
    with pytest.raises(OSError):
        repushfast.head_digest(sh, "m")
