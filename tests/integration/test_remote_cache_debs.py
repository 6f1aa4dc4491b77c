"""Layered images' Debian layers in the remote cache (debian/remotelayers.py), through
the CLI: runner A builds from a signed test apt repository and pushes; runner B, with an
empty local cache and the apt repository gone, builds the same bytes from the registry
(docker-registry on 127.0.0.1) without fetching a package."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, serve, write_repo
from tests.support.cli import vmbuild_cli, write_spec
from tests.support.crafted import tar_bytes
from tests.support.registry_fixture import Registry, have_tools, registry
from vmbuild.registry.pull import client_for
from vmbuild.remotecache import artifact, remotes_for

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo"),
]

LIB = "usr/lib/x86_64-linux-gnu"
PACKAGES = [
    Pkg("libfoo", files={f"{LIB}/libfoo.so.1": b"foo\n" * 3000}),
    Pkg(
        "app",
        fields={"Depends": "libfoo"},
        files={"bin/app": b"#!/bin/sh\necho app\n", "usr/share/app/data": b"d" * 5000},
        symlinks={"usr/bin/app-link": "app"},
    ),
]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with registry(tmp_path_factory.mktemp("deb-cache-registry")) as r:
        yield r


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """(served root, keyring) of a small signed repository."""
    root = tmp_path / "apt"
    (root / "build").mkdir(parents=True)
    keys = Keys(root / "gnupg")
    write_repo(root / "www", [build_deb(p, root / "build") for p in PACKAGES], keys)
    return root / "www", keys.keyring


def _spec(tmp: Path, url: str, keyring: Path, extra: str = "") -> Path:
    return write_spec(
        tmp,
        'function = "buildLayeredImage"\nname = "debs"\ntag = "1"\n'
        'contents = [{ deb = "app" }, "' + str(tmp / "host") + '"]\n'
        f'{extra}[debian]\nmirror = "{url}"\nsuite = "{SUITE}"\nkeyring = "{keyring}"\n',
    )


def _env(tmp: Path, runner: str) -> dict[str, str]:
    return {
        "VMBUILD_CACHE_DIR": str(tmp / runner / "cache"),
        "VMBUILD_STEP_CACHE": str(tmp / runner / "steps"),
        "REGISTRY_AUTH_FILE": str(tmp / "no-auth.json"),
    }


def _build(tmp: Path, runner: str, spec: Path, *args: str) -> tuple[Path, str]:
    out = tmp / f"{runner}.tar"
    proc = vmbuild_cli(
        "build", spec, "--out", out, "--compress", "none", *args, env=_env(tmp, runner)
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def _fetched(tmp: Path, runner: str) -> list[str]:
    """The .debs runner ``runner`` has downloaded."""
    debs = tmp / runner / "cache" / "debs"
    return sorted(p.name for p in debs.glob("*.deb")) if debs.is_dir() else []


def test_runner_b_builds_the_same_image_without_the_packages(
    tmp_path: Path, reg: Registry, repo: tuple[Path, Path]
) -> None:
    root, keyring = repo
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "etc").mkdir()
    (tmp_path / "host" / "etc" / "motd").write_text("hello\n")
    url = f"docker://{reg.host}/team/debcache"
    with serve(root) as mirror:
        spec = _spec(tmp_path, mirror, keyring, "minLayerSize = 0\n")  # a layer per unit
        a, _ = _build(tmp_path, "a", spec, "--cache-to", url)
        assert len(_fetched(tmp_path, "a")) == 2
        plain, _ = _build(tmp_path, "plain", spec)  # no remote caches: the same bytes
        assert plain.read_bytes() == a.read_bytes()
    assert spec.with_name("spec.toml.lock").is_file()
    # The apt repository is gone: runner B can only get the packages' layers remotely.
    b, err = _build(tmp_path, "b", spec, "--cache-from", url, "--locked")
    assert b.read_bytes() == a.read_bytes()
    assert _fetched(tmp_path, "b") == [] and "warning" not in err, err
    # libfoo, app, the merged-/usr links and the dpkg status: a layer each, none packed.
    assert err.count("deblayer ") == 4, err
    # The entries are artifacts any tool reads.
    tags = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", url], capture_output=True, text=True
    )
    assert tags.returncode == 0 and "deblayer-" in tags.stdout and "debcontent-" in tags.stdout


def test_a_tampered_layer_is_a_miss_and_the_packages_are_fetched(
    tmp_path: Path, reg: Registry, repo: tuple[Path, Path]
) -> None:
    root, keyring = repo
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "f").write_text("f\n")
    url = f"docker://{reg.host}/team/tampered"
    with serve(root) as mirror:
        spec = _spec(tmp_path, mirror, keyring, 'mtime = "2001-01-01T00:00:00Z"\n')
        a, _ = _build(tmp_path, "a", spec, "--cache-to", url)
        # Change a byte in every gzip blob of the cache repository (the entries' layers).
        # The registry's blob store is shared by the module's tests (a later one may push
        # the same blob): each is put back after this test's build.
        blobs = reg.root / "docker/registry/v2/blobs/sha256"
        layers = reg.root / "docker/registry/v2/repositories/team/tampered/_layers/sha256"
        saved: dict[Path, bytes] = {}
        for link in layers.iterdir():
            data = blobs / link.name[:2] / link.name / "data"
            raw = bytearray(data.read_bytes())
            if raw[:2] == b"\x1f\x8b":
                saved[data] = bytes(raw)
                raw[len(raw) // 2] ^= 0xFF
                data.write_bytes(bytes(raw))
        try:
            b, err = _build(tmp_path, "b", spec, "--cache-from", url)
        finally:
            for data, raw_bytes in saved.items():
                data.write_bytes(raw_bytes)
    assert b.read_bytes() == a.read_bytes()
    assert "ignoring a bad entry" in err, err
    assert len(_fetched(tmp_path, "b")) == 2


def test_a_consistent_layer_with_unsafe_names_is_a_miss_and_the_packages_are_fetched(
    tmp_path: Path, reg: Registry, repo: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write to the cache repository can push deblayer entries whose
    manifest, config and diff_ids agree; their layers are checked as any layer vmbuild
    reads: ``..`` and absolute names make each a miss with a warning."""
    root, keyring = repo
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "f").write_text("f\n")
    url = f"docker://{reg.host}/team/forged"
    with serve(root) as mirror:
        spec = _spec(tmp_path, mirror, keyring, "minLayerSize = 0\n")
        a, _ = _build(tmp_path, "a", spec, "--cache-to", url)
        tags = subprocess.run(
            ["skopeo", "list-tags", "--tls-verify=false", url], capture_output=True, text=True
        )
        keys = [t[len("deblayer-") :] for t in json.loads(tags.stdout)["Tags"]]
        keys = [k for k in keys if len(k) == 64]
        assert keys
        forged = tmp_path / "forged.tar"
        forged.write_bytes(
            tar_bytes([("../../../../tmp/cache-evil", "f", "x\n"), ("/etc/x", "f", "x\n")])
        )
        diff_id = "sha256:" + hashlib.sha256(forged.read_bytes()).hexdigest()
        remotes = remotes_for([url], None)
        assert remotes is not None
        repo_ref = remotes.cache_from[0]
        client = client_for(repo_ref, True)
        monkeypatch.setattr(artifact, "_exists", lambda *a: False)  # overwrite the tags
        for key in keys:
            artifact.put(client, repo_ref, "deblayer", key, [artifact.File(forged, diff_id)], {})
        client.close()
        monkeypatch.undo()
        b, err = _build(tmp_path, "b", spec, "--cache-from", url)
    assert b.read_bytes() == a.read_bytes()
    assert err.count("ignoring a bad entry") == len(keys), err
    assert "climbs out" in err or "absolute" in err
    assert len(_fetched(tmp_path, "b")) == 2
