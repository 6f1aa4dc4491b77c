"""pullImage, prefetch and push against a real registry (docker-registry on 127.0.0.1),
checked against skopeo."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.registry_fixture import (
    Registry,
    have_tools,
    make_archive,
    manifest_of,
    push_archive,
    put_index,
    registry,
    skopeo,
)
from vmbuild.builders import pull_image
from vmbuild.config.common import Fields
from vmbuild.config.pull import parse
from vmbuild.errors import RegistryError
from vmbuild.oci.output import OutputOptions
from vmbuild.registry.nixhash import to_sri

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo"),
]


@dataclass
class World:
    reg: Registry
    digest: str  # test/img:v1 (amd64)
    arm_digest: str
    index_digest: str
    archive: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("registry")
    with registry(tmp / "reg") as reg:
        big = os.urandom(300_000) + bytes(200_000)
        amd = make_archive(
            tmp / "amd.tar", [{"etc/hello": b"hello\n" * 100}, {"bin/data": big}], arch="amd64"
        )
        arm = make_archive(tmp / "arm.tar", [{"etc/hello": b"hallo\n"}], arch="arm64", variant="v8")
        push_archive(reg, amd, "test/img:v1")
        push_archive(reg, arm, "test/img:arm")
        index = put_index(reg, "test/img", "multi", [("v1", "amd64", None), ("arm", "arm64", "v8")])
        yield World(
            reg,
            manifest_of(reg, "test/img", "v1")[0],
            manifest_of(reg, "test/img", "arm")[0],
            index,
            amd,
        )


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "no-auth.json"))


def vmbuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vmbuild", *args],
        capture_output=True,
        text=True,
        env=full,
        check=False,
    )


def spec_file(tmp: Path, **table: object) -> Path:
    lines = ['function = "pullImage"']
    for key, value in table.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path = tmp / "spec.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_error(stderr: str, message: str) -> None:
    """Exactly one error line, the last one, saying ``message``; no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("vmbuild: error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert stderr.splitlines()[-1] == errors[0] and "Traceback" not in stderr, stderr


def sha_sri(path: Path) -> str:
    return to_sri(hashlib.sha256(path.read_bytes()).digest())


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def image_contents(path: Path) -> tuple[bytes, list[bytes]]:
    """(config bytes, layer tars) of a docker-archive, whatever its file layout."""
    files = members(path)
    with tarfile.open(path) as tar:
        links = {m.name: m.linkname for m in tar if m.issym()}
    entry = json.loads(files["manifest.json"])[0]

    def get(name: str) -> bytes:
        if name in links:
            name = os.path.normpath(os.path.join(os.path.dirname(name), links[name]))
        return files[name]

    return files[entry["Config"]], [get(n) for n in entry["Layers"]]


def pull_to(tmp: Path, world: World, fmt: str = "docker-archive", **table: object) -> Path:
    spec = {"imageName": f"{world.reg.host}/test/img", "imageDigest": world.digest, **table}
    spec.setdefault("hash", "sha256-" + "A" * 43 + "=")
    fields = Fields(spec, "spec", tmp)
    out = tmp / f"out-{fmt}.tar"
    with pytest.raises(RegistryError, match="hash mismatch") as err:
        pull_image.build(parse(fields), out, OutputOptions(fmt, "none"))
    assert not out.exists()
    got = str(err.value.message).split("got ")[1].split(",")[0]
    spec["hash"] = got
    pull_image.build(parse(Fields(spec, "spec", tmp)), out, OutputOptions(fmt, "none"))
    assert sha_sri(out) == got
    return out


def test_pull_matches_skopeo_and_is_reproducible(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = pull_to(tmp_path, world)
    theirs = tmp_path / "skopeo.tar"
    ref = f"{world.reg.host}/test/img"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{ref}@{world.digest}",
        f"docker-archive:{theirs}:{ref}:latest",
    )
    assert image_contents(ours) == image_contents(theirs)
    assert json.loads(members(ours)["manifest.json"])[0]["RepoTags"] == [f"{ref}:latest"]
    # Another machine: empty cache, same bytes.
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "other-cache"))
    again = tmp_path / "again"
    again.mkdir()
    assert pull_to(again, world).read_bytes() == ours.read_bytes()
    # Warm cache: no blob fetched, same bytes.
    third = tmp_path / "third"
    third.mkdir()
    assert pull_to(third, world).read_bytes() == ours.read_bytes()


def test_pull_cli_build_and_final_name(tmp_path: Path, world: World) -> None:
    out = tmp_path / "img.tar"
    spec = spec_file(
        tmp_path,
        imageName=f"{world.reg.host}/test/img",
        imageDigest=world.digest,
        finalImageName="mine/app",
        finalImageTag="2.0",
        sha256="0" * 52,
    )
    res = vmbuild("build", str(spec), "--out", str(out))
    assert res.returncode != 0 and not out.exists()
    one_error(res.stderr, "hash mismatch")
    got = res.stderr.split("got ")[1].split(",")[0]
    spec = spec_file(
        tmp_path,
        imageName=f"{world.reg.host}/test/img",
        imageDigest=world.digest,
        finalImageName="mine/app",
        finalImageTag="2.0",
        hash=got,
    )
    res = vmbuild("build", str(spec), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert sha_sri(out) == got
    assert json.loads(members(out)["manifest.json"])[0]["RepoTags"] == ["mine/app:2.0"]
    inspect = json.loads(skopeo("inspect", f"docker-archive:{out}").stdout)
    assert inspect["Architecture"] == "amd64"


def test_oci_archive_keeps_registry_manifest(tmp_path: Path, world: World) -> None:
    out = pull_to(tmp_path, world, "oci-archive")
    raw = skopeo("inspect", "--raw", f"oci-archive:{out}").stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == world.digest
    # Pushed back (elsewhere), its compressed blobs go as they are: mounted, same digests.
    res = vmbuild("push", str(out), f"docker://{world.reg.host}/from-oci/app:1")
    assert res.returncode == 0, res.stderr
    assert "(0 uploaded, 3 mounted, 0 already there)" in res.stderr, res.stderr
    pushed = json.loads(manifest_of(world.reg, "from-oci/app", "1")[1])
    original = json.loads(raw)
    assert [x["digest"] for x in pushed["layers"]] == [x["digest"] for x in original["layers"]]
    assert pushed["config"]["digest"] == original["config"]["digest"]


def test_index_resolves_platform(tmp_path: Path, world: World) -> None:
    out = pull_to(tmp_path, world, imageDigest=world.index_digest, arch="aarch64")
    config, layers = image_contents(out)
    assert json.loads(config)["architecture"] == "arm64"
    assert len(layers) == 1
    fields = Fields(
        {
            "imageName": f"{world.reg.host}/test/img",
            "imageDigest": world.index_digest,
            "hash": "sha256-" + "A" * 43 + "=",
            "arch": "s390x",
        },
        "spec",
        tmp_path,
    )
    with pytest.raises(
        RegistryError, match=r"no image for linux/s390x.*linux/amd64, linux/arm64/v8"
    ):
        pull_image.build(parse(fields), tmp_path / "x.tar", OutputOptions("docker-archive", "none"))
    assert not (tmp_path / "x.tar").exists()


def test_prefetch_prints_platform_digest(tmp_path: Path, world: World) -> None:
    res = vmbuild(
        "prefetch",
        "--image-name",
        f"{world.reg.host}/test/img",
        "--image-tag",
        "multi",
        "--arch",
        "arm64",
        "--final-image-tag",
        "stable",
    )
    assert res.returncode == 0, res.stderr
    spec = tomllib.loads(res.stdout)
    assert spec["imageDigest"] == world.arm_digest  # the platform's, not the index's
    assert spec["finalImageTag"] == "stable"
    assert "-> ImageDigest: " + world.arm_digest in res.stderr
    assert spec["function"] == "pullImage"  # a whole spec: it builds as it is
    out = tmp_path / "img.tar"
    path = tmp_path / "pull.toml"
    path.write_text(res.stdout)
    res = vmbuild("build", str(path), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert sha_sri(out) == spec["hash"]


def test_push_then_nothing_to_do_then_mount(tmp_path: Path, world: World) -> None:
    src = pull_to(tmp_path, world)
    # The pull remembered the registry's blobs: a push there mounts them.
    res = vmbuild("push", str(src), f"docker://{world.reg.host}/mounted/app:1")
    assert res.returncode == 0, res.stderr
    assert "(0 uploaded, 3 mounted, 0 already there)" in res.stderr, res.stderr
    # A fresh cache knows nothing: layers are compressed and uploaded.
    fresh = {"VMBUILD_CACHE_DIR": str(tmp_path / "fresh-cache")}
    dest = f"docker://{world.reg.host}/pushed/app:1"
    res = vmbuild("push", "--tls-verify=false", str(src), dest, env=fresh)
    assert res.returncode == 0, res.stderr
    assert "(3 uploaded, 0 mounted, 0 already there)" in res.stderr, res.stderr
    digest = res.stdout.strip()
    back = tmp_path / "back.tar"
    skopeo("copy", "--src-tls-verify=false", dest, f"docker-archive:{back}")
    assert image_contents(back) == image_contents(src)
    res = vmbuild("push", str(src), dest, env=fresh)
    assert res.returncode == 0 and res.stdout.strip() == digest
    assert "(0 uploaded, 0 mounted, 3 already there)" in res.stderr, res.stderr


def test_push_compressed_archive_and_oci_layout(tmp_path: Path, world: World) -> None:
    layout = tmp_path / "layout"
    skopeo("copy", f"docker-archive:{world.archive}", f"oci:{layout}:x")
    res = vmbuild("push", str(layout), f"docker://{world.reg.host}/layout/app:x")
    assert res.returncode == 0, res.stderr
    gz = tmp_path / "a.tar.gz"
    subprocess.run(f"gzip -c {world.archive} > {gz}", shell=True, check=True)
    res = vmbuild("push", "--compress", "zstd", str(gz), f"docker://{world.reg.host}/gz/app:z")
    assert res.returncode == 0, res.stderr
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{world.reg.host}/gz/app:z"
    ).stdout
    assert all(la["mediaType"].endswith("+zstd") for la in json.loads(raw)["layers"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"imageDigest": "sha256:" + "1" * 64}, "manifest unknown"),
        ({"imageName": "127.0.0.1:1/x"}, "cannot reach"),
        ({"imageDigest": "sha256:abc"}, "is not a valid digest"),
        ({"imageName": "Bad/Name"}, "is not a valid image name"),
        ({"imageName": "{host}/nothere"}, "unknown"),
    ],
)
def test_bad_input_one_line(
    tmp_path: Path, world: World, change: dict[str, str], message: str
) -> None:
    table = {
        "imageName": f"{world.reg.host}/test/img",
        "imageDigest": world.digest,
        "hash": "sha256-" + "A" * 43 + "=",
    }
    table.update({k: v.replace("{host}", world.reg.host) for k, v in change.items()})
    out = tmp_path / "x.tar"
    res = vmbuild("build", str(spec_file(tmp_path, **table)), "--out", str(out))
    assert res.returncode != 0
    one_error(res.stderr, message)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists() and left in (["spec.toml"], ["cache", "spec.toml"])


def test_corrupt_registry_storage(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("corrupt")
    with registry(tmp / "reg") as reg:
        arc = make_archive(tmp / "a.tar", [{"f": os.urandom(50_000)}])
        push_archive(reg, arc, "c/img:1")
        digest, raw, _ = manifest_of(reg, "c/img", "1")
        layer = json.loads(raw)["layers"][0]["digest"]
        table = {
            "imageName": f"{reg.host}/c/img",
            "imageDigest": digest,
            "hash": "sha256-" + "A" * 43 + "=",
        }
        spec = spec_file(tmp_path, **table)
        out = tmp_path / "x.tar"
        data = reg.blob_file(layer).read_bytes()
        reg.blob_file(layer).write_bytes(data[:-10])
        res = vmbuild("build", str(spec), "--out", str(out))
        assert res.returncode != 0 and "manifest says" in res.stderr, res.stderr
        reg.blob_file(layer).write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
        res = vmbuild("build", str(spec), "--out", str(out))
        assert res.returncode != 0 and "arrived with digest" in res.stderr, res.stderr
        one_error(res.stderr, "arrived with digest")
        reg.blob_file(digest).write_bytes(raw.replace(b"{", b"{ ", 1))
        res = vmbuild("build", str(spec), "--out", str(out))
        assert res.returncode != 0 and "sent a manifest with digest" in res.stderr, res.stderr
        assert not out.exists() and sorted(tmp_path.iterdir()) == [tmp_path / "cache", spec]
        stored = [p.name for p in (tmp_path / "cache/blobs/sha256").iterdir()]
        assert layer.split(":")[1] not in stored and not any(".part" in n for n in stored)


def test_basic_auth(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("basic")
    with registry(tmp / "reg", htpasswd=("alice", "s3cret")) as reg:
        arc = make_archive(tmp / "a.tar", [{"f": b"x" * 1000}])
        push_archive(reg, arc, "b/img:1")
        digest = manifest_of(reg, "b/img", "1")[0]
        auth = tmp_path / "auth.json"
        env = {"REGISTRY_AUTH_FILE": str(auth)}
        args = ("prefetch", "--image-name", f"{reg.host}/b/img", "--image-tag", "1", "-q")
        res = vmbuild(*args, env=env)
        assert res.returncode != 0 and "requires a login" in res.stderr, res.stderr
        auth.write_text(
            json.dumps({"auths": {reg.host: {"username": "alice", "password": "wrong"}}})
        )
        res = vmbuild(*args, env=env)
        assert res.returncode != 0 and "refused the credentials of 'alice'" in res.stderr
        import base64

        token = base64.b64encode(b"alice:s3cret").decode()
        auth.write_text(json.dumps({"auths": {f"http://{reg.host}": {"auth": token}}}))
        res = vmbuild(*args, env=env)
        assert res.returncode == 0, res.stderr
        assert tomllib.loads(res.stdout)["imageDigest"] == digest
        res = vmbuild("push", str(arc), f"docker://{reg.host}/b/other:2", env=env)
        assert res.returncode == 0, res.stderr
        auth.write_text(json.dumps({"auths": {reg.host: {"username": "alice", "password": "x"}}}))
        res = vmbuild("push", str(arc), f"docker://{reg.host}/b/other:3", env=env)
        assert res.returncode != 0
        one_error(res.stderr, "refused the credentials of 'alice'")


def test_multi_member_gzip_layer(tmp_path: Path, world: World) -> None:
    """A layer gzipped in several members: its trailer lies about the tar's size."""
    import gzip

    from tests.support.registry_fixture import layer_tar
    from vmbuild.oci.archive import write_oci_layout
    from vmbuild.oci.image import BlobRef, Image, Layer

    tar = layer_tar({"a": os.urandom(70_000), "b": b"b" * 90_000})
    gz = tmp_path / "layer.gz"
    gz.write_bytes(gzip.compress(tar[:50_000], mtime=0) + gzip.compress(tar[50_000:], mtime=0))
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    layout = tmp_path / "layout"
    write_oci_layout(
        Image("mm/img", "1", config, [Layer(diff_id, BlobRef.whole(gz), "gzip")]), layout
    )
    dest = f"{world.reg.host}/mm/img"
    res = vmbuild("push", str(layout), f"docker://{dest}:1")
    assert res.returncode == 0, res.stderr
    digest = manifest_of(world.reg, "mm/img", "1")[0]
    theirs = tmp_path / "skopeo.tar"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{dest}@{digest}",
        f"docker-archive:{theirs}:{dest}:latest",
    )
    ours = pull_to(tmp_path, world, imageName=dest, imageDigest=digest)
    assert image_contents(ours) == image_contents(theirs)
    assert image_contents(ours)[1] == [tar]


def test_unwritable_cache_is_one_line(tmp_path: Path, world: World) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    table = {
        "imageName": f"{world.reg.host}/test/img",
        "imageDigest": world.digest,
        "hash": "sha256-" + "A" * 43 + "=",
    }
    out = tmp_path / "x.tar"
    env = {"VMBUILD_CACHE_DIR": str(blocker / "cache")}
    res = vmbuild("build", str(spec_file(tmp_path, **table)), "--out", str(out), env=env)
    assert res.returncode != 0 and not out.exists()
    one_error(res.stderr, "cannot be made")


def test_push_keeps_config_bytes(tmp_path: Path, world: World) -> None:
    """A config written with spaces and unsorted keys keeps its bytes (the image ID)."""
    import io

    from tests.support.registry_fixture import layer_tar

    tar_bytes = layer_tar({"etc/x": b"x"})
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    config = {"rootfs": {"type": "layers", "diff_ids": [diff_id]}, "os": "linux"}
    config["architecture"] = "amd64"
    raw = json.dumps(config, indent=3).encode()
    config_name = hashlib.sha256(raw).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["x/y:1"], "Layers": ["l/layer.tar"]}]
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (
            ("l/layer.tar", tar_bytes),
            (config_name, raw),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    res = vmbuild("push", str(archive), f"docker://{world.reg.host}/odd/img:1")
    assert res.returncode == 0, res.stderr
    pushed = json.loads(manifest_of(world.reg, "odd/img", "1")[1])
    assert pushed["config"]["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_config_lying_about_diff_ids(tmp_path: Path, world: World) -> None:
    """prefetch checks every diff_id; a build whose pinned hash does not match checks
    them too, so a hash it prints is always of checked layers."""
    import gzip

    from tests.support.registry_fixture import layer_tar
    from vmbuild.oci.archive import write_oci_layout
    from vmbuild.oci.image import BlobRef, Image, Layer

    gz = tmp_path / "layer.gz"
    gz.write_bytes(gzip.compress(layer_tar({"a": b"a" * 1000}), mtime=0))
    lie = "sha256:" + "5" * 64
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [lie]},
    }
    layout = tmp_path / "layout"
    write_oci_layout(Image("lie/img", "1", config, [Layer(lie, BlobRef.whole(gz), "gzip")]), layout)
    dest = f"{world.reg.host}/lie/img"
    assert vmbuild("push", str(layout), f"docker://{dest}:1").returncode == 0
    res = vmbuild("prefetch", "--image-name", dest, "--image-tag", "1")
    assert res.returncode != 0
    one_error(res.stderr, f"but the config says {lie}")
    digest = manifest_of(world.reg, "lie/img", "1")[0]
    table = {"imageName": dest, "imageDigest": digest, "hash": "sha256-" + "A" * 43 + "="}
    out = tmp_path / "x.tar"
    res = vmbuild("build", str(spec_file(tmp_path, **table)), "--out", str(out))
    assert res.returncode != 0 and not out.exists()
    one_error(res.stderr, f"but the config says {lie}")
