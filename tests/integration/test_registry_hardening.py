"""pull and prefetch against hostile or broken registries (crafted ones on 127.0.0.1):
Ctrl-C during a slow download, huge unwanted bodies, redirect loops and dead targets,
digests that are paths, malformed manifests, and layers with unsafe names."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.support import stubregistry as sr
from tests.support.cli import vmbuild_cli
from tests.support.registry_fixture import (
    have_tools,
    layer_tar,
    make_archive,
    manifest_of,
    push_archive,
    registry,
)

FAKE_HASH = "sha256-" + "A" * 43 + "="


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private cache and TMPDIR; afterwards neither holds a temp dir or a .part file."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    values = {"VMBUILD_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(scratch)}
    yield values
    assert list(scratch.iterdir()) == []
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]


def one_line(stderr: str, message: str) -> None:
    """One error line saying ``message``; nothing else but progress ("fetched ...")."""
    lines = [line for line in stderr.splitlines() if not line.startswith("fetched ")]
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error:"), stderr
    assert message in lines[0], stderr


def prefetch(host: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return vmbuild_cli("prefetch", "--image-name", f"{host}/{sr.REPO}", "-q", *extra, env=env)


def spec(tmp: Path, host: str, digest: str) -> Path:
    path = tmp / "pull.toml"
    path.write_text(
        f'function = "pullImage"\nimageName = "{host}/{sr.REPO}"\n'
        f'imageDigest = "{digest}"\nhash = "{FAKE_HASH}"\n'
    )
    return path


def build(tmp: Path, host: str, digest: str, env: dict[str, str], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vmbuild",
        "build",
        str(spec(tmp, host, digest)),
        "--out",
        str(tmp / "out.tar"),
        *extra,
    ]


# -- item 9: interrupts and memory ----------------------------------------------------


@pytest.mark.parametrize("command", ["prefetch", "build"])
@pytest.mark.parametrize("slow_blob", ["layer", "config"])
def test_ctrl_c_during_a_slow_download(
    command: str, slow_blob: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """A registry sending one byte a second: Ctrl-C ends vmbuild at once, cleanly,
    whether a worker thread (a layer) or the main thread (the config) is downloading."""
    layer = layer_tar({"a": os.urandom(300)})
    data = layer if slow_blob == "layer" else sr.config_of([sr.sha(layer)])
    started = threading.Event()
    slow = {f"/v2/{sr.REPO}/blobs/{sr.sha(data)}": sr.drip(data, started, limit=20)}
    with sr.image([layer], routes=slow) as (host, digest):
        if command == "prefetch":
            argv = [sys.executable, "-m", "vmbuild", "prefetch", "--image-name"]
            argv += [f"{host}/{sr.REPO}", "-q"]
        else:
            argv = build(tmp_path, host, digest, env)
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        try:
            assert started.wait(20), "the download never started"
            time.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            proc.wait()
    # One line says so (a build also logs each blob it finished: the config here).
    others = [line for line in err.splitlines() if not line.startswith("fetched ")]
    assert (proc.returncode, others) == (130, ["vmbuild: interrupted"]), err
    assert took < 1.5, f"took {took:.1f} s"
    assert not (tmp_path / "out.tar").exists()


def _peak_rss_kib(argv: list[str], env: dict[str, str]) -> tuple[int, str, int]:
    """(exit status, stderr, peak RSS in KiB) of ``argv``, the only child of a helper."""
    code = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run({argv!r}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,"
        " text=True)\n"
        "sys.stderr.write(p.stderr)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=True,
    )
    status, rss = res.stdout.split()
    return int(status), res.stderr, int(rss)


@pytest.mark.parametrize("status", [307, 401, 503])
def test_a_huge_unwanted_body_costs_no_memory(
    status: int, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blob's first answer (a redirect, a 401, a 503 to retry) has a 200 MB body:
    the pull still works and its peak memory stays far below that."""
    layer = layer_tar({"a": b"hello\n"})
    blob = f"/v2/{sr.REPO}/blobs/{sr.sha(layer)}"
    sent: list[int] = []
    first = {
        307: {"Location": "/storage/blob"},
        401: {"WWW-Authenticate": 'Basic realm="r"'},
        503: {},
    }[status]
    calls = {"n": 0}

    def once(h: sr.Stub) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            sr.big(status, 200 << 20, first, sent)(h)
        else:
            h._send(200, layer)

    routes = {blob: once, "/storage/blob": sr.answer(200, layer)}
    if status == 401:  # a login for the registry, so the client can answer the challenge
        auth = tmp_path / "auth.json"
        env = {**env, "REGISTRY_AUTH_FILE": str(auth)}
    with sr.image([layer], routes=routes) as (host, _):
        if status == 401:
            token = "dTpw"  # u:p
            auth.write_text(json.dumps({"auths": {host: {"auth": token}}}))
        argv = [sys.executable, "-m", "vmbuild", "prefetch", "--image-name"]
        code, err, rss = _peak_rss_kib([*argv, f"{host}/{sr.REPO}", "-q"], env)
    assert code == 0, err
    assert sr.taken(sent) and sent[0] < 32 << 20, sent
    assert rss < 150 * 1024, f"peak RSS {rss} KiB"


def test_redirect_loop_and_dead_targets(tmp_path: Path, env: dict[str, str]) -> None:
    layer = layer_tar({"a": b"x"})
    blob = f"/v2/{sr.REPO}/blobs/{{layer0}}"
    with sr.serve({}) as dead:
        pass  # nothing listens there any more
    cases = [
        ({blob: sr.redirect("/loop/a"), "/loop/a": sr.redirect("/loop/b"),
          "/loop/b": sr.redirect("/loop/a")}, "too many redirects from"),
        ({blob: sr.redirect(f"http://{dead}/data")},
         f"cannot reach the redirect target http://{dead}/data"),
        ({blob: sr.redirect("/storage/missing")}, "/storage/missing answered 404"),
    ]  # fmt: skip
    for routes, message in cases:
        with sr.image([layer], routes=routes) as (host, _):
            res = prefetch(host, env)
        assert res.returncode == 5
        one_line(res.stderr, message)


# -- item 1: nothing from the registry becomes a path ---------------------------------


TRAVERSAL = "sha256:../../../../x"


def _manifest(config: dict[str, object], layers: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": sr.OCI_MANIFEST, "config": config, "layers": layers}
    ).encode()


def test_digests_that_are_paths(tmp_path: Path, env: dict[str, str]) -> None:
    layer = layer_tar({"a": b"x"})
    config = sr.config_of([sr.sha(layer)])
    good_config = {"mediaType": sr.OCI_CONFIG, "digest": sr.sha(config), "size": len(config)}
    good_layer = {"mediaType": sr.OCI_LAYER, "digest": sr.sha(layer), "size": len(layer)}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": sr.OCI_MANIFEST,
                    "digest": TRAVERSAL,
                    "size": 10,
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    manifests = [
        _manifest(good_config, [{**good_layer, "digest": TRAVERSAL}]),
        _manifest({**good_config, "digest": TRAVERSAL}, [good_layer]),
        _manifest(good_config, [{**good_layer, "digest": "sha256:" + "A" * 64}]),
        index,
    ]
    for raw in manifests:
        with sr.image([layer], manifest=raw) as (host, _):
            res = prefetch(host, env, "--arch", "amd64")
        assert res.returncode == 5
        one_line(res.stderr, "malformed digest")
    # A diff_id in the config is a member name of the docker-archive.
    with sr.image([layer], diff_ids=[TRAVERSAL]) as (host, digest):
        for res in (
            prefetch(host, env),
            vmbuild_cli(*build(tmp_path, host, digest, env)[3:], env=env),
        ):
            assert res.returncode == 5
            one_line(res.stderr, f"malformed diff_id '{TRAVERSAL}'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "pull.toml", "tmp"]
    assert not Path("/x").exists() and not (tmp_path.parent / "x").exists()


# -- item 11: manifests that are not what they claim ----------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[1, 2]",
        b'"a string"',
        b"{}",
        b'{"schemaVersion": 2, "mediaType": ["x"]}',
        b'{"schemaVersion": 2, "layers": "many"}',
        b'{"schemaVersion": 2, "layers": [], "config": 5}',
        b'{"schemaVersion": 2, "layers": [5], "config": {}}',
        b'{"schemaVersion": 2, "layers": [{"digest": 5, "size": 1}], "config": {}}',
        b'{"schemaVersion": 2, "layers": [], "config": {"digest": "sha256:'
        + b"a" * 64
        + b'", "size": "12"}}',
        b'{"schemaVersion": 2, "manifests": [{"digest": null}]}',
        b'{"schemaVersion": 2, "manifests": "x"}',
        b"\xff\xfe not json",
    ],
)
def test_malformed_manifest_is_one_line(raw: bytes, env: dict[str, str]) -> None:
    with sr.image([], manifest=raw) as (host, _):
        res = prefetch(host, env)
    assert res.returncode == 5
    one_line(res.stderr, f"{host}/{sr.REPO}:latest: ")


@pytest.mark.parametrize(
    "config",
    [b"[1]", b'{"rootfs": "x"}', b'{"rootfs": {"diff_ids": [5]}}', b"nope"],
)
def test_malformed_config_is_one_line(config: bytes, env: dict[str, str]) -> None:
    raw = _manifest({"mediaType": sr.OCI_CONFIG, "digest": sr.sha(config), "size": len(config)}, [])
    routes = {f"/v2/{sr.REPO}/blobs/{sr.sha(config)}": sr.answer(200, config)}
    with sr.image([], manifest=raw, routes=routes) as (host, _):
        res = prefetch(host, env)
    assert res.returncode == 5
    one_line(res.stderr, "config")


# -- item 5: unsafe names in a pulled layer -------------------------------------------


EVIL = {"etc/ok": b"fine", "../../escaped": b"evil"}


def _compressed(data: bytes, kind: str) -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(data, mtime=0), sr.OCI_LAYER + "+gzip"
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data), sr.OCI_LAYER + "+zstd"
    return data, sr.OCI_LAYER


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_unsafe_layer_names_are_refused(kind: str, tmp_path: Path, env: dict[str, str]) -> None:
    plain = layer_tar(EVIL)
    blob, media_type = _compressed(plain, kind)
    with sr.image([blob], media_type=media_type, diff_ids=[sr.sha(plain)]) as (host, digest):
        res = prefetch(host, env)
        assert res.returncode == 1
        one_line(res.stderr, "unsafe path '../../escaped' climbs out with '..'")
        for fmt in ("docker-archive", "oci-archive"):
            argv = build(tmp_path, host, digest, env, "--format", fmt)
            res = vmbuild_cli(*argv[3:], env=env)
            assert res.returncode == 1
            one_line(res.stderr, "climbs out with '..'")
            assert not (tmp_path / "out.tar").exists()
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"this is not a tar archive at all" * 100, "not a readable tar"),
        (layer_tar({"a": b"x" * 5000})[:3000], "truncated"),
        (gzip.compress(layer_tar({"a": os.urandom(5000)}), mtime=0)[:-100], "does not decompress"),
    ],
    ids=["garbage", "truncated-tar", "truncated-gzip"],
)
def test_broken_layers_are_refused(blob: bytes, message: str, env: dict[str, str]) -> None:
    with sr.image([blob]) as (host, _):
        res = prefetch(host, env)
    assert res.returncode == 1
    one_line(res.stderr, message)


@pytest.mark.tools
@pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo")
def test_unsafe_names_from_a_real_registry(tmp_path: Path, env: dict[str, str]) -> None:
    """A layer with ``../`` names, pushed with skopeo (which does not look inside)."""
    with registry(tmp_path / "reg") as reg:
        archive = make_archive(tmp_path / "evil.tar", [{"etc/ok": b"1"}, EVIL])
        push_archive(reg, archive, "evil/img:1")
        digest = manifest_of(reg, "evil/img", "1")[0]
        res = vmbuild_cli("prefetch", "--image-name", f"{reg.host}/evil/img", "--image-tag", "1",
                          env=env)  # fmt: skip
        assert res.returncode == 1
        one_line(res.stderr, "unsafe path '../../escaped'")
        path = tmp_path / "pull.toml"
        path.write_text(
            f'function = "pullImage"\nimageName = "{reg.host}/evil/img"\n'
            f'imageDigest = "{digest}"\nhash = "{FAKE_HASH}"\n'
        )
        res = vmbuild_cli("build", path, "--out", tmp_path / "out.tar", env=env)
        assert res.returncode == 1
        one_line(res.stderr, "unsafe path '../../escaped'")
        assert not (tmp_path / "out.tar").exists()


def test_ctrl_c_during_a_slow_upload(tmp_path: Path, env: dict[str, str]) -> None:
    """A registry reading an upload one byte a second (the sender blocks once the
    socket buffers are full): Ctrl-C ends ``vmbuild push`` at once."""
    archive = make_archive(tmp_path / "big.tar", [{"data": os.urandom(32 << 20)}])
    started = threading.Event()

    def slow_reader(h: sr.Stub) -> None:
        h.close_connection = True
        end = time.monotonic() + 20
        started.set()
        while time.monotonic() < end and h.rfile.read(1):
            time.sleep(1)

    routes = {
        "/v2/": sr.answer(200, b"{}"),
        f"/v2/{sr.REPO}/blobs/uploads/": sr.answer(202, b"", {"Location": "/upload/1"}),
        "/upload/1": slow_reader,
    }
    with sr.serve(routes) as host:
        argv = [sys.executable, "-m", "vmbuild", "push", str(archive), f"docker://{host}/x/y:1"]
        proc = subprocess.Popen(
            [*argv, "--compress", "none", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        try:
            assert started.wait(30), "the upload never started"
            time.sleep(1)  # the socket buffers fill up
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (130, "vmbuild: interrupted\n")
    assert took < 1.5, f"took {took:.1f} s"
