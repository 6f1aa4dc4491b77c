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


# ``python -m vmbuild ARGV`` (or, ENTRY=entry, the installed command's entry point) in a
# child that then writes the modules it loaded to FILE.
CHILD = """
import json, os, runpy, sys
out, sys.argv = sys.argv[1], ["vmbuild", *sys.argv[2:]]
try:
    if os.environ.get("ENTRY") == "entry":
        from vmbuild.entry import main
        sys.exit(main())
    runpy.run_module("vmbuild", run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as exc:
    status = exc.code
sys.stdout.flush()
with open(out, "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(status)
"""
HEAVY = ("argparse", "logging", "http.client", "email", "typing", "ssl", "vmbuild.cli")


def child(
    tmp: Path, *args: str | Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str], list[str]]:
    """(the run, the modules it loaded, the requests the registry saw) of a real
    ``python -m vmbuild ARGS`` (which has the before-argparse path; vmbuild_cli's
    in-process run is the full path)."""
    before = len(requests_logged(tmp / "reg"))
    mods = tmp / "modules.json"
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(mods), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        check=False,
    )
    return run, json.loads(mods.read_text()), requests_logged(tmp / "reg")[before:]


def same(fast: subprocess.CompletedProcess[str], full: subprocess.CompletedProcess[str]) -> None:
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        full.returncode,
        full.stdout,
        full.stderr,
    )


@pytest.mark.parametrize("entry", ["module", "entry"])
@pytest.mark.parametrize(
    "args",
    [
        ["push"],
        ["push", "-q"],
        ["-q", "push"],
        ["push", "--json"],
        ["push", "--json", "--tls-verify=false"],
        ["push", "--tls-verify=true", "--quiet"],
    ],
)
def test_a_hit_answers_before_argparse_as_the_full_path_does(
    tmp_path: Path, reg: Registry, args: list[str], entry: str
) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}, {"etc/b": b"b\n"}])
    dest = f"docker://{reg.host}/app/fast:1"
    push(tmp_path, image, dest)
    fast, loaded, requests = child(tmp_path, *args, image, dest, env={"ENTRY": entry})
    assert requests == ["HEAD /v2/app/fast/manifests/1"], requests
    assert not [m for m in loaded if m.startswith(HEAVY)], loaded
    same(fast, vmbuild_cli(*args, image, dest))  # in-process: the full path
    assert fast.returncode == 0 and "sha256:" in fast.stdout


def test_what_the_fast_path_cannot_answer_goes_the_full_way(tmp_path: Path, reg: Registry) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}])
    other = make_archive(tmp_path / "b.tar", [{"etc/b": b"b\n"}])
    dest = f"docker://{reg.host}/app/slow:1"
    # No record yet: a whole push.
    first, loaded, requests = child(tmp_path, "push", "-q", image, dest)
    assert first.returncode == 0 and "argparse" in loaded, first.stderr
    assert any(r.startswith("PUT ") for r in manifests(requests)), requests
    digest = first.stdout.strip()
    # A login for the registry in the auth file: the full path reads it.
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {reg.host: {"auth": "dTpw"}}}))
    env = {"REGISTRY_AUTH_FILE": str(authfile)}
    run, loaded, _ = child(tmp_path, "push", "-q", image, dest, env=env)
    assert "argparse" in loaded and run.stdout.strip() == digest, run.stderr
    # An auth file the full path cannot read: its error, not the fast path's answer.
    authfile.write_text("{not json")
    run, loaded, _ = child(tmp_path, "push", "-q", image, dest, env=env)
    assert run.returncode != 0 and "argparse" in loaded
    same(run, vmbuild_cli("push", "-q", image, dest, env=env))
    # The tag names another image now: the registry's answer differs, a full push.
    push(tmp_path, other, dest)
    run, loaded, requests = child(tmp_path, "push", "-q", image, dest)
    assert run.stdout.strip() == digest and "argparse" in loaded
    assert any(r.startswith("PUT ") for r in manifests(requests)), requests
    # An option outside the narrow shape: the full path (still one HEAD: it is unchanged).
    for entry in ("module", "entry"):
        run, loaded, requests = child(
            tmp_path, "push", "--jobs", "2", image, dest, env={"ENTRY": entry}
        )
        assert "argparse" in loaded and requests == ["HEAD /v2/app/slow/manifests/1"]
        same(run, vmbuild_cli("push", "--jobs", "2", image, dest))


def test_a_proxy_does_not_apply_to_this_machine(tmp_path: Path, reg: Registry) -> None:
    image = make_archive(tmp_path / "a.tar", [{"etc/a": b"a\n"}])
    dest = f"docker://{reg.host}/app/proxy:1"
    push(tmp_path, image, dest)
    env = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    fast, loaded, requests = child(tmp_path, "push", image, dest, env=env)
    assert requests == ["HEAD /v2/app/proxy/manifests/1"] and "argparse" not in loaded
    same(fast, vmbuild_cli("push", image, dest, env=env))


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
