"""fromImage = { function = "pullImage", ... }: pulled (and cached) before the build, as
nixpkgs composes ``fromImage = pullImage { ... }``; real registry on 127.0.0.1."""

from __future__ import annotations

import json
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.containers import skopeo
from tests.support.registry_fixture import Registry, make_archive, push_archive, registry

pytestmark = pytest.mark.tools


@pytest.fixture
def pulled(tmp_path: Path) -> Iterator[tuple[str, Path, Registry]]:
    """A pullImage table for an image in a running registry, the archive it pulls, and
    the registry (a test may stop it)."""
    with registry(tmp_path / "reg") as reg:
        archive = make_archive(tmp_path / "base.tar", [{"etc/base": b"from the registry\n"}])
        push_archive(reg, archive, "team/base:1")
        env = _env(tmp_path, "probe")
        name = f"{reg.host}/team/base"
        found = vmbuild_cli("prefetch", "--image-name", name, "--image-tag", "1", env=env)
        assert found.returncode == 0, found.stderr
        table = {
            k: v
            for k, v in tomllib.loads(found.stdout).items()
            if k in ("imageName", "imageDigest", "hash", "finalImageName", "finalImageTag")
        }
        pull_spec = tmp_path / "pull.toml"
        pull_spec.write_text(
            'function = "pullImage"\n'
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        )
        reference = tmp_path / "reference.tar"
        got = vmbuild_cli("build", pull_spec, "--out", reference, env=env)
        assert got.returncode == 0, got.stderr
        inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
        yield f'{{ function = "pullImage", {inline} }}', reference, reg


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    return {
        "VMBUILD_CACHE_DIR": str(tmp_path / f"cache-{name}"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "no-auth.json"),
    }


def _diff_ids(archive: Path) -> list[str]:
    info = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}").stdout)
    return list(info["rootfs"]["diff_ids"])


def test_build_image_on_a_pulled_base(tmp_path: Path, pulled: tuple[str, Path, Registry]) -> None:
    table, reference, _ = pulled
    root = tmp_path / "root"
    root.mkdir()
    (root / "app").write_text("mine\n")
    spec = tmp_path / "image.toml"
    spec.write_text(f'name = "ontop"\ntag = "1"\nfromImage = {table}\ncopyToRoot = ["{root}"]\n')
    env = _env(tmp_path, "build")
    out = tmp_path / "ontop.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", env=env)
    assert proc.returncode == 0, proc.stderr
    base_ids = _diff_ids(reference)
    assert _diff_ids(out)[: len(base_ids)] == base_ids
    assert len(_diff_ids(out)) == len(base_ids) + 1
    kept = (tmp_path / "cache-build" / "pulled").iterdir()
    cached = [p for p in kept if not p.name.startswith(".")]  # not the verified record
    assert [p.read_bytes() for p in cached] == [reference.read_bytes()]


def test_layered_and_export_on_a_pulled_base(
    tmp_path: Path, pulled: tuple[str, Path, Registry]
) -> None:
    table, reference, _ = pulled
    env = _env(tmp_path, "both")
    layered = tmp_path / "layered.toml"
    layered.write_text(f'function = "buildLayeredImage"\nname = "l"\nfromImage = {table}\n')
    out = tmp_path / "l.tar"
    proc = vmbuild_cli("build", layered, "--out", out, "--compress", "none", env=env)
    assert proc.returncode == 0, proc.stderr
    assert _diff_ids(out)[: len(_diff_ids(reference))] == _diff_ids(reference)
    export = tmp_path / "export.toml"
    export.write_text(f'function = "exportImage"\nfromImage = {table}\n')
    rootfs = tmp_path / "rootfs.tar"
    proc = vmbuild_cli("build", export, "--out", rootfs, env=env)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(rootfs) as tar:
        assert tar.extractfile("etc/base").read() == b"from the registry\n"  # type: ignore[union-attr]


def test_a_cached_pull_needs_no_registry(
    tmp_path: Path, pulled: tuple[str, Path, Registry]
) -> None:
    table, _, reg = pulled
    env = _env(tmp_path, "offline")
    spec = tmp_path / "image.toml"
    spec.write_text(f'name = "ontop"\nfromImage = {table}\n')
    first = vmbuild_cli("build", spec, "--out", tmp_path / "a.tar.gz", env=env)
    assert first.returncode == 0, first.stderr
    reg.proc.terminate()
    reg.proc.wait(10)
    second = vmbuild_cli("build", spec, "--out", tmp_path / "b.tar.gz", env=env)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


@pytest.mark.parametrize(
    ("table", "wanted"),
    [
        ('{ function = "buildImage", name = "x" }', "must be a pullImage"),
        ('{ imageName = "127.0.0.1:1/x" }', "imageDigest is required"),
    ],
)
def test_bad_pull_tables(tmp_path: Path, table: str, wanted: str) -> None:
    spec = tmp_path / "image.toml"
    spec.write_text(f'name = "x"\nfromImage = {table}\n')
    res = vmbuild_cli("build", spec, "--out", tmp_path / "o.tar.gz")
    assert res.returncode == 2 and wanted in res.stderr and "Traceback" not in res.stderr
