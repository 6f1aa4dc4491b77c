"""A re-push of an unchanged image is one HEAD of its manifest (registry/repush.py),
through the CLI against a real registry whose access log counts the requests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli
from tests.support.registry_fixture import (
    Registry,
    have_tools,
    make_archive,
    registry,
    requests_logged,
)

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo"),
]


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))
    with registry(tmp_path / "reg", access_log=True) as r:
        yield r


def push(tmp: Path, image: Path, dest: str, *args: str) -> tuple[str, str, list[str]]:
    """(digest, stderr, the requests the registry in ``tmp/reg`` saw) of one push."""
    log = tmp / "reg"
    before = len(requests_logged(log))
    res = vmbuild_cli("push", *args, image, dest)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip(), res.stderr, requests_logged(log)[before:]


def manifests(requests: list[str]) -> list[str]:
    return [r for r in requests if "/manifests/" in r]


def test_unchanged_image_is_one_head(tmp_path: Path, reg: Registry) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n" * 50}, {"bin/b": os.urandom(4096)}])
    dest = f"docker://{reg.host}/app/one:1"
    digest, _, first = push(tmp_path, image, dest)
    assert any(r.startswith("PUT ") and "/manifests/1" in r for r in first), first
    again, err, second = push(tmp_path, image, dest)
    assert again == digest
    assert "(0 uploaded, 0 mounted, 3 already there)" in err, err
    # The TLS probe fails below HTTP; then exactly one request, no blob HEADs.
    assert second == ["HEAD /v2/app/one/manifests/1"], second
    # By digest too, and --json/--digestfile say the same as a full push.
    res = vmbuild_cli(
        "push", "--json", "--digestfile", tmp_path / "d", image, f"docker://{reg.host}/app/one:1"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["digest"] == digest == (tmp_path / "d").read_text()


def test_a_changed_file_or_tag_is_pushed_again(tmp_path: Path, reg: Registry) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}])
    other = make_archive(tmp_path / "b.tar", [{"etc/b": b"b\n"}])
    dest = f"docker://{reg.host}/app/two:1"
    digest, _, _ = push(tmp_path, image, dest)
    # The tag now names another image: the registry's answer differs, a full push restores it.
    other_digest, _, _ = push(tmp_path, other, dest)
    assert other_digest != digest
    again, _, requests = push(tmp_path, image, dest)
    assert again == digest and any(r.startswith("PUT ") for r in manifests(requests)), requests
    # Rewritten with other bytes at the same path (its identity changes): a full push.
    shutil.copyfile(other, image)
    changed, _, requests = push(tmp_path, image, dest)
    assert changed == other_digest
    assert any(r.startswith("PUT ") for r in manifests(requests)), requests
    # Other options make another manifest: not the remembered one.
    zstd, _, requests = push(tmp_path, image, dest, "--compress", "zstd")
    assert zstd != other_digest and any(r.startswith("PUT ") for r in manifests(requests))


ENTRY = "import sys; from vmbuild.__main__ import main; sys.exit(main())"  # the installed one


@pytest.mark.parametrize("command", [["-m", "vmbuild"], ["-c", ENTRY]])
def test_a_real_process_re_push_is_one_head(
    tmp_path: Path, reg: Registry, command: list[str]
) -> None:
    """``python -m vmbuild`` and the installed command's entry point take the same path."""
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}, {"etc/b": b"b\n"}])
    dest = f"docker://{reg.host}/app/child:1"
    digest, _, _ = push(tmp_path, image, dest)
    before = len(requests_logged(tmp_path / "reg"))
    run = subprocess.run(
        [sys.executable, *command, "push", "-q", str(image), dest],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=REPO,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == digest, run.stderr
    requests = requests_logged(tmp_path / "reg")[before:]
    assert requests == ["HEAD /v2/app/child/manifests/1"], requests


def test_a_proxy_does_not_apply_to_this_machine(tmp_path: Path, reg: Registry) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}])
    dest = f"docker://{reg.host}/app/proxy:1"
    push(tmp_path, image, dest)
    env = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    before = len(requests_logged(tmp_path / "reg"))
    res = vmbuild_cli("push", image, dest, env=env)
    assert res.returncode == 0, res.stderr
    assert requests_logged(tmp_path / "reg")[before:] == ["HEAD /v2/app/proxy/manifests/1"]


def test_a_layer_whose_tar_is_not_its_diff_id_is_not_pushed(tmp_path: Path, reg: Registry) -> None:
    """The one hash of an uncompressed layer's tar (the blob's own check as push reads
    it to compress) still refuses a layer that is not what the config says."""
    from tests.support.registry_fixture import layer_tar
    from vmbuild.oci.archive import write_docker_archive
    from vmbuild.oci.image import BlobRef, Image, Layer

    good = tmp_path / "good.tar"
    good.write_bytes(layer_tar({"etc/a": b"a\n"}))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(layer_tar({"etc/b": b"b\n" * 4000}))
    lie = "sha256:" + hashlib.sha256(good.read_bytes()).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
    config["rootfs"]["diff_ids"] = [lie]  # type: ignore[index]
    image = tmp_path / "lie.tar"
    with open(image, "wb") as f:
        write_docker_archive(
            Image("lie/img", "1", config, [Layer(lie, BlobRef.whole(bad), "none")]), f, 1
        )
    before = len(requests_logged(tmp_path / "reg"))
    res = vmbuild_cli("push", image, f"docker://{reg.host}/lie/img:1")
    assert res.returncode != 0
    assert f"not its diff_id {lie}" in res.stderr, res.stderr
    assert res.stderr.count("vmbuild: error:") == 1, res.stderr
    requests = requests_logged(tmp_path / "reg")[before:]
    assert not [r for r in requests if "/manifests/" in r or r.startswith("PUT ")], requests
    store = tmp_path / "cache" / "blobs"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
