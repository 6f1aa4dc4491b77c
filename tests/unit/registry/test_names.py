"""Image references, nix hashes, platforms and the pullImage spec."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vmbuild.config.common import Fields
from vmbuild.config.pull import parse
from vmbuild.errors import RegistryError, SpecError
from vmbuild.oci.names import check_pinned_digest
from vmbuild.registry.manifest import Descriptor, Index, Platform, parse_platform, select
from vmbuild.registry.manifest import parse as parse_manifest
from vmbuild.registry.nixhash import from_base32, parse_sha256, to_base32, to_sri
from vmbuild.registry.reference import (
    Repository,
    parse_docker_url,
    parse_reference,
    parse_repository,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("name", "host", "path", "api"),
    [
        ("debian", "docker.io", "library/debian", "registry-1.docker.io"),
        ("nixos/nix", "docker.io", "nixos/nix", "registry-1.docker.io"),
        ("docker.io/debian", "docker.io", "library/debian", "registry-1.docker.io"),
        ("index.docker.io/a/b", "docker.io", "a/b", "registry-1.docker.io"),
        ("quay.io/team/app", "quay.io", "team/app", "quay.io"),
        ("localhost/app", "localhost", "app", "localhost"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "127.0.0.1:5000"),
        ("[::1]:5000/x", "[::1]:5000", "x", "[::1]:5000"),
        ("my-registry.example.com:443/x_y/z.w", "my-registry.example.com:443", "x_y/z.w", None),
    ],
)
def test_repository(name: str, host: str, path: str, api: str | None) -> None:
    repo = parse_repository(name)
    assert (repo.host, repo.path) == (host, path)
    assert repo.api_host == (api or host)


@pytest.mark.parametrize("name", ["", "UPPER/case", "a//b", "-a", "a:tag", "a@sha256:x", "h:x/a"])
def test_bad_repository(name: str) -> None:
    with pytest.raises(SpecError):
        parse_repository(name)


def test_local_hosts() -> None:
    assert Repository("127.0.0.1:5000", "x").is_local
    assert Repository("localhost", "x").is_local
    assert Repository("[::1]:80", "x").is_local
    assert not Repository("example.com", "x").is_local


def test_reference_and_url() -> None:
    ref = parse_reference("localhost:5000/a/b")
    assert (ref.tag, ref.digest, ref.reference) == ("latest", None, "latest")
    ref = parse_reference(f"a/b:1.0@{DIGEST}")
    assert ref.reference == DIGEST and str(ref) == f"a/b@{DIGEST}"
    ref = parse_docker_url("docker://127.0.0.1:5000/x/y:t")
    assert (ref.repo.host, ref.repo.path, ref.tag) == ("127.0.0.1:5000", "x/y", "t")
    with pytest.raises(SpecError, match="docker://"):
        parse_docker_url("127.0.0.1:5000/x")
    with pytest.raises(SpecError, match="tag"):
        parse_reference("a/b:-bad")


@pytest.mark.parametrize("bad", ["sha256:abc", "sha512:" + "a" * 128, "sha256:" + "A" * 64, "x"])
def test_bad_digest(bad: str) -> None:
    with pytest.raises(SpecError, match="not a valid digest"):
        check_pinned_digest(bad, "imageDigest")


def test_nix_base32_known_value() -> None:
    empty = hashlib.sha256(b"").digest()
    assert to_base32(empty) == "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
    assert from_base32(to_base32(empty)) == empty


@pytest.mark.parametrize("n", range(8))
def test_hash_spellings(n: int) -> None:
    raw = hashlib.sha256(bytes([n])).digest()
    for text in (to_base32(raw), to_sri(raw), raw.hex(), "sha256:" + to_base32(raw)):
        assert parse_sha256(text, "hash") == raw


@pytest.mark.parametrize("bad", ["", "sha256-abc", "e" * 52, "0" * 51, "z" * 52, "sha1-AAAA"])
def test_bad_hash(bad: str) -> None:
    with pytest.raises(SpecError, match="not a sha256 hash"):
        parse_sha256(bad, "hash")


@pytest.mark.parametrize(
    ("arch", "want"),
    [
        ("x86_64", Platform("linux", "amd64")),
        ("amd64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64", "v8")),
        ("arm64", Platform("linux", "arm64")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("arm/v6", Platform("linux", "arm", "v6")),
    ],
)
def test_platform(arch: str, want: Platform) -> None:
    assert parse_platform(None, arch) == want


def _index(*platforms: dict[str, str]) -> Index:
    descs = tuple(
        Descriptor("application/vnd.oci.image.manifest.v1+json", f"sha256:{i:064x}", 1, p)
        for i, p in enumerate(platforms)
    )
    return Index(b"", "application/vnd.oci.image.index.v1+json", DIGEST, descs)


def test_select_platform() -> None:
    idx = _index(
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "unknown", "architecture": "unknown"},
    )
    assert select(idx, Platform("linux", "amd64"), "x").digest.endswith("0")
    assert select(idx, Platform("linux", "arm"), "x").digest.endswith("2")  # v7 preferred
    assert select(idx, Platform("linux", "arm", "v6"), "x").digest.endswith("1")
    assert select(idx, Platform("linux", "arm64", "v8"), "x").digest.endswith("3")
    with pytest.raises(RegistryError, match=r"no image for linux/s390x") as err:
        select(idx, Platform("linux", "s390x"), "x")
    assert "linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64" in str(err.value.hint)


def test_manifest_kinds() -> None:
    with pytest.raises(RegistryError, match="schema 1"):
        parse_manifest(b'{"schemaVersion": 1}', "", DIGEST, "x")
    with pytest.raises(RegistryError, match="not JSON"):
        parse_manifest(b"<html>", "", DIGEST, "x")
    with pytest.raises(RegistryError, match="malformed digest"):
        parse_manifest(
            b'{"schemaVersion":2,"config":{"digest":"md5:x","size":1},"layers":[]}',
            "application/vnd.oci.image.manifest.v1+json",
            DIGEST,
            "x",
        )


def _spec(tmp: Path, **table: object) -> Fields:
    base: dict[str, object] = {
        "imageName": "nixos/nix",
        "imageDigest": DIGEST,
        "hash": to_sri(b"\1" * 32),
    }
    base.update(table)
    return Fields({k: v for k, v in base.items() if v is not None}, "spec.toml", tmp)


def test_pull_spec_defaults(tmp_path: Path) -> None:
    spec = parse(_spec(tmp_path))
    assert spec.final_image_name == "nixos/nix" and spec.final_image_tag == "latest"
    assert spec.repo.api_host == "registry-1.docker.io" and spec.tls_verify
    assert spec.platform.os == "linux" and spec.sha256 == b"\1" * 32
    spec = parse(_spec(tmp_path, hash=None, sha256=to_base32(b"\2" * 32), arch="x86_64"))
    assert spec.sha256 == b"\2" * 32 and spec.platform.arch == "amd64"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"imageName": None}, "imageName is required"),
        ({"imageDigest": None}, "imageDigest is required"),
        ({"hash": None}, "hash is required"),
        ({"sha256": "0" * 52}, "not both"),
        ({"imageDigest": "latest"}, "not a valid digest"),
        ({"finalImageTag": "a b"}, "not a valid tag"),
        ({"tlsVerify": "no"}, "tlsVerify must be"),
        ({"imageTag": "x"}, "unknown argument 'imageTag'"),
    ],
)
def test_pull_spec_errors(tmp_path: Path, table: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(_spec(tmp_path, **table))


def test_progress_lines_and_bars() -> None:
    import io

    from vmbuild.progress import human
    from vmbuild.registry.progress import Progress

    plain = io.StringIO()
    p = Progress("fetched", plain, live=False)
    p.start("abc", 2_000_000)
    p.update("abc", 2_000_000)
    p.done("abc")
    assert plain.getvalue().startswith("fetched abc 2.0 MB in ")
    live = io.StringIO()
    q = Progress("pushed", live, live=True)
    q.start("a", 100)
    q.start("b", 100)
    q.update("a", 50)
    q.done("a")
    q.close()
    out = live.getvalue()
    assert "a [" in out and "b [" in out and "pushed a 100 B" in out and "\x1b[" in out
    assert human(999) == "999 B" and human(1500) == "1.5 kB" and human(2.5e9) == "2.5 GB"


def test_cli_tls_option() -> None:
    import argparse

    from vmbuild.cli.registry import _bool, _tls_option

    p = argparse.ArgumentParser()
    _tls_option(p)
    assert p.parse_args([]).tls_verify is True
    assert p.parse_args(["--tls-verify=false"]).tls_verify is False
    assert p.parse_args(["--tls-verify"]).tls_verify is True
    with pytest.raises(argparse.ArgumentTypeError):
        _bool("maybe")
