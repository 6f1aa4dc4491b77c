"""A re-push of an unchanged image is one HEAD of its manifest (registry/repush.py),
through the CLI against a real registry whose access log counts the requests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
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
