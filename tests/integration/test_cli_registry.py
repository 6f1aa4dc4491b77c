"""prefetch and push as a skopeo/nix user expects, against a real registry on 127.0.0.1:
prefetch's output is a spec `vmbuild build` takes; --json on both; push's --creds,
--authfile and --digestfile."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.registry_fixture import Registry, make_archive, push_archive, registry

pytestmark = pytest.mark.tools

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("reg")
    with registry(tmp / "reg", htpasswd=(USER, PASSWORD)) as r:
        archive = make_archive(tmp / "img.tar", [{"etc/hello": b"hello\n"}])
        push_archive(r, archive, "cli/img:1")
        yield r


@pytest.fixture
def env(tmp_path: Path, reg: Registry) -> dict[str, str]:
    auth = tmp_path / "auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    return {"VMBUILD_CACHE_DIR": str(tmp_path / "cache"), "REGISTRY_AUTH_FILE": str(auth)}


def test_prefetch_output_builds_as_it_is(
    tmp_path: Path, reg: Registry, env: dict[str, str]
) -> None:
    proc = vmbuild_cli(
        "prefetch", "--image-name", f"{reg.host}/cli/img", "--image-tag", "1", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('function = "pullImage"\n')
    spec = tmp_path / "pull.toml"
    spec.write_text(proc.stdout)
    built = vmbuild_cli("build", spec, "-o", tmp_path / "pulled.tar", "--json", env=env)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["imageName"] == f"{reg.host}/cli/img"


def test_prefetch_json(reg: Registry, env: dict[str, str]) -> None:
    proc = vmbuild_cli(
        "prefetch", "--image-name", f"{reg.host}/cli/img", "--image-tag", "1", "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["imageDigest"].startswith("sha256:") and data["hash"].startswith("sha256-")
    assert data["finalImageTag"] == "1" and data["platform"] == "linux/amd64"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    (tmp_path / "spec.toml").write_text('name = "pushed"\ntag = "1"\n')
    out = tmp_path / "pushed.tar.gz"
    assert vmbuild_cli("build", tmp_path / "spec.toml", "-o", out).returncode == 0
    return out


def test_push_with_creds_json_and_digestfile(tmp_path: Path, reg: Registry, image: Path) -> None:
    nowhere = {"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}
    digestfile = tmp_path / "digest"
    proc = vmbuild_cli(
        "push",
        image,
        f"docker://{reg.host}/cli/pushed:1",
        "--creds",
        f"{USER}:{PASSWORD}",
        "--json",
        "--digestfile",
        digestfile,
        env=nowhere,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["digest"].startswith("sha256:") and data["uploaded"] >= 2
    assert digestfile.read_text() == data["digest"]
    wrong = vmbuild_cli(
        "push", image, f"docker://{reg.host}/cli/pushed:2", "--creds", f"{USER}:nope", env=nowhere
    )
    assert wrong.returncode == 5 and "refused" in wrong.stderr, wrong.stderr
    anonymous = vmbuild_cli("push", image, f"docker://{reg.host}/cli/pushed:3", env=nowhere)
    assert anonymous.returncode == 5, anonymous.stderr


def test_push_with_authfile(
    tmp_path: Path, reg: Registry, image: Path, env: dict[str, str]
) -> None:
    nowhere = {"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}
    proc = vmbuild_cli(
        "push",
        image,
        f"docker://{reg.host}/cli/pushed:4",
        "--authfile",
        env["REGISTRY_AUTH_FILE"],
        "-q",
        env=nowhere,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sha256:") and proc.stderr == ""
    missing = vmbuild_cli(
        "push", image, f"docker://{reg.host}/cli/x:1", "--authfile", tmp_path / "nope.json"
    )
    assert missing.returncode == 2 and "--authfile" in missing.stderr
