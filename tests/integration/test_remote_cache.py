"""Remote cache entries in a real registry (docker-registry on 127.0.0.1), two local
cache directories standing in for two runners; no VM (the step layers are made here)."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.crafted import tar_bytes
from tests.support.registry_fixture import (
    Registry,
    free_port,
    make_archive,
    push_archive,
    registry,
)
from vmbuild import stepcache
from vmbuild.registry.pull import client_for
from vmbuild.remotecache import artifact, remotes_for, using
from vmbuild.remotecache.remotes import Remotes

pytestmark = [pytest.mark.tools]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("cache-registry")) as r:
        yield r


def _runner(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the caches at runner ``name``'s own empty directories."""
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / name / "cache"))
    monkeypatch.setenv("VMBUILD_STEP_CACHE", str(tmp_path / name / "steps"))


def _layer(tmp_path: Path, text: str, name: str = "data") -> tuple[Path, str]:
    path = tmp_path / "layer.tar"
    path.write_bytes(tar_bytes([(name, "f", text * 5000)]))
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _publish_and_push(tmp_path: Path, remotes: Remotes, key: str, text: str) -> str:
    layer, diff_id = _layer(tmp_path, text)
    with using(remotes):
        stepcache.publish(key, layer, diff_id, {"step": "test"})
        remotes.flush()
    return diff_id


def test_runner_b_gets_runner_a_entry_and_skopeo_reads_it(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"docker://{reg.host}/team/cache"
    key = stepcache.step_key({"test": "a-to-b"})
    _runner(tmp_path, "a", monkeypatch)
    a = remotes_for([], url)
    assert a is not None
    diff_id = _publish_and_push(tmp_path, a, key, "step output")

    inspect = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"{url}:step-{key}"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads(inspect.stdout)
    assert manifest["artifactType"] == artifact.ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == artifact.CONFIG_TYPE

    _runner(tmp_path, "b", monkeypatch)
    assert stepcache.lookup(key) is None  # B's own cache is empty
    b = remotes_for([url], None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with using(b):
            got = stepcache.lookup(key)
    assert got is not None and got.diff_id == diff_id
    assert got.meta == {"step": "test"}
    assert got.layer.is_relative_to(tmp_path / "b")
    assert stepcache.lookup(key) is not None  # now B's own

    other = stepcache.step_key({"test": "a-to-b", "script": "changed"})
    with using(remotes_for([url], None)):
        assert stepcache.lookup(other) is None  # a changed input misses


def test_two_writers_of_one_key_both_succeed(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = stepcache.step_key({"test": "twice"})
    layer, diff_id = _layer(tmp_path, "same")
    remotes = remotes_for([], f"docker://{reg.host}/team/race")
    assert remotes is not None
    repo = remotes.cache_to[0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(name: str) -> None:
        client = client_for(repo, True)
        try:
            start.wait()
            artifact.put(client, repo, "step", key, [artifact.File(layer, diff_id)], {})
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    _runner(tmp_path, "w", monkeypatch)
    threads = [threading.Thread(target=write, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _runner(tmp_path, "reader", monkeypatch)
    with using(remotes_for([f"docker://{reg.host}/team/race"], None)):
        assert stepcache.lookup(key) is not None


def test_a_tampered_blob_is_a_miss_with_one_warning(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"docker://{reg.host}/team/tamper"
    key = stepcache.step_key({"test": "tamper"})
    _runner(tmp_path, "a", monkeypatch)
    a = remotes_for([], url)
    assert a is not None
    _publish_and_push(tmp_path, a, key, "to be tampered with")
    inspect = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"{url}:step-{key}"],
        capture_output=True,
        text=True,
        check=True,
    )
    layer_digest = json.loads(inspect.stdout)["layers"][0]["digest"]
    blob = reg.blob_file(layer_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    _runner(tmp_path, "b", monkeypatch)
    b = remotes_for([url], None)
    with pytest.warns(UserWarning, match="bad entry") as caught, using(b):
        assert stepcache.lookup(key) is None
    assert len(caught) == 1
    assert not _kept(tmp_path / "b" / "steps")


@pytest.mark.parametrize("name", ["../../../../tmp/cache-evil", "/etc/cache-evil"])
def test_an_entry_whose_layer_holds_an_unsafe_name_is_a_miss_with_one_warning(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Whoever can write to the cache repository can push an entry whose manifest,
    config and diff_ids agree: its layer is still checked as any layer vmbuild reads."""
    url = f"docker://{reg.host}/team/unsafe"
    key = stepcache.step_key({"test": "unsafe", "name": name})
    remotes = remotes_for([url], None)
    assert remotes is not None
    layer, diff_id = _layer(tmp_path, "x", name)
    client = client_for(remotes.cache_from[0], True)
    artifact.put(client, remotes.cache_from[0], "step", key, [artifact.File(layer, diff_id)], {})
    client.close()
    _runner(tmp_path, "b", monkeypatch)
    with pytest.warns(UserWarning, match="bad entry.*unsafe") as caught, using(remotes):
        assert stepcache.lookup(key) is None
    assert len(caught) == 1
    assert not _kept(tmp_path / "b" / "steps")


def test_a_config_that_does_not_parse_is_a_miss(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner(tmp_path, "a", monkeypatch)
    url = f"docker://{reg.host}/team/garbage"
    key = stepcache.step_key({"test": "garbage"})
    remotes = remotes_for([url], None)
    assert remotes is not None
    layer, diff_id = _layer(tmp_path, "x")
    monkeypatch.setattr(artifact, "_config", lambda *a: b"{not json")
    client = client_for(remotes.cache_from[0], True)
    files = [artifact.File(layer, diff_id)]
    artifact.put(client, remotes.cache_from[0], "step", key, files, {})
    client.close()
    monkeypatch.undo()
    _runner(tmp_path, "b", monkeypatch)
    with pytest.warns(UserWarning, match="does not parse"), using(remotes):
        assert stepcache.lookup(key) is None


def test_an_unreachable_cache_is_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner(tmp_path, "a", monkeypatch)
    url = f"docker://127.0.0.1:{free_port()}/team/cache"
    remotes = remotes_for([url], url)
    assert remotes is not None
    layer, diff_id = _layer(tmp_path, "y")
    with pytest.warns(UserWarning, match="building without it") as caught, using(remotes):
        assert stepcache.lookup(stepcache.step_key({"k": 1})) is None
        assert stepcache.lookup(stepcache.step_key({"k": 2})) is None
        stepcache.publish(stepcache.step_key({"k": 3}), layer, diff_id, {})
        remotes.flush()
    assert len(caught) == 1


class _RefusesArtifacts(http.server.BaseHTTPRequestHandler):
    """A registry that has every blob but refuses every manifest it is sent."""

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, b"{}")

    def do_HEAD(self) -> None:
        self._answer(404 if "/manifests/" in self.path else 200)

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        error = {"errors": [{"code": "MANIFEST_INVALID", "message": "artifacts refused"}]}
        self._answer(400, json.dumps(error).encode())


def test_a_registry_that_refuses_artifacts_is_one_warning_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runner(tmp_path, "a", monkeypatch)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusesArtifacts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"docker://127.0.0.1:{server.server_address[1]}/team/cache"
        remotes = remotes_for([], url)
        assert remotes is not None
        layer, diff_id = _layer(tmp_path, "refused")
        with pytest.warns(UserWarning, match="push failed.*400") as caught, using(remotes):
            stepcache.publish(stepcache.step_key({"k": "refused"}), layer, diff_id, {})
            stepcache.publish(stepcache.step_key({"k": "refused2"}), layer, diff_id, {})
            remotes.flush()
        assert len(caught) == 1
        assert "artifacts refused" in str(caught[0].message)
    finally:
        server.shutdown()
        server.server_close()


def test_a_pulled_base_comes_from_the_remote_cache_once_upstream_is_gone(
    tmp_path: Path, reg: Registry
) -> None:
    """fromImage = a pullImage table: runner A pulls it and pushes it to the cache; with
    the upstream registry stopped, runner B (empty caches) builds from the cache alone."""
    url = f"docker://{reg.host}/team/bases"
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "app").write_text("mine\n")

    def env(name: str) -> dict[str, str]:
        return {
            "VMBUILD_CACHE_DIR": str(tmp_path / name / "cache"),
            "VMBUILD_STEP_CACHE": str(tmp_path / name / "steps"),
        }

    with registry(tmp_path / "upstream") as up:
        archive = make_archive(tmp_path / "base.tar", [{"etc/base": b"upstream\n"}])
        push_archive(up, archive, "team/base:1")
        name = f"{up.host}/team/base"
        found = vmbuild_cli("prefetch", "--image-name", name, "--image-tag", "1", env=env("p"))
        assert found.returncode == 0, found.stderr
        table = {
            k: v
            for k, v in tomllib.loads(found.stdout).items()
            if k in ("imageName", "imageDigest", "hash", "finalImageName", "finalImageTag")
        }
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
        spec = tmp_path / "image.toml"
        spec.write_text(
            f'name = "ontop"\ntag = "1"\ncopyToRoot = ["{tmp_path / "root"}"]\n'
            f'fromImage = {{ function = "pullImage", {inline} }}\n'
        )
        a = vmbuild_cli(
            "build", spec, "--out", tmp_path / "a.tar.gz", "--cache-to", url, env=env("a")
        )
        assert a.returncode == 0, a.stderr
        assert "pulled" in a.stderr and "pushed to the remote cache" in a.stderr
    b = vmbuild_cli(
        "build", spec, "--out", tmp_path / "b.tar.gz", "--cache-from", url, env=env("b")
    )
    assert b.returncode == 0, b.stderr
    assert "from the remote cache" in b.stderr and "warning" not in b.stderr
    assert (tmp_path / "b.tar.gz").read_bytes() == (tmp_path / "a.tar.gz").read_bytes()


def _kept(steps: Path) -> list[Path]:
    """What a step cache holds but the lock files of the entries this process held
    (outside a build, a hold lasts as long as the process)."""
    return [p for p in steps.glob("*") if not p.name.endswith(".lock")]
