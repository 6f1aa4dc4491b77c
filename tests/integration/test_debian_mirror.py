"""nixpkgs' examples with Debian packages from the host's configured mirror, checked
with the real tools (buildah run, skopeo + umoci, dpkg --admindir). One package cache
serves the module: each package is downloaded once."""

from __future__ import annotations

import json
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli, write_spec
from tests.support.containers import Containers, skopeo

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"VMBUILD_CACHE_DIR": str(tmp_path_factory.mktemp("deb-cache"))}


def _build(spec: Path, out: Path, env: dict[str, str], *args: str) -> None:
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", *args, env=env)
    assert proc.returncode == 0, proc.stderr


def _history(archive: Path) -> dict[str, str]:
    """Each new layer's history comment -> its diff_id."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    comments = [h["created_by"] for h in config["history"]]
    return dict(zip(comments, config["rootfs"]["diff_ids"], strict=True))


def test_redis_answers_ping(tmp_path: Path, cache: dict[str, str], containers: Containers) -> None:
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "redis"\n'
        'contents = [{ deb = "redis-server" }, { deb = "bash" }]\n'
        'config = { Cmd = ["/usr/bin/redis-server"] }\n',
    )
    _build(spec, tmp_path / "redis.tar", cache)
    port = random.randint(20000, 40000)
    out = containers.run_image(
        tmp_path / "redis.tar",
        "bash",
        "-c",
        f"redis-server --port {port} --save '' >/dev/null & "
        f"for i in {{1..500}}; do redis-cli -p {port} ping 2>/dev/null && break; done; "
        f"redis-cli -p {port} shutdown nosave; wait",
    )
    assert "PONG" in out


def test_nginx_serves_a_page(tmp_path: Path, cache: dict[str, str], containers: Containers) -> None:
    port = random.randint(20000, 40000)
    site = tmp_path / "site" / "srv"
    site.mkdir(parents=True)
    (site / "index.html").write_text("hello from nginx-light\n")
    (site / "nginx.conf").write_text(
        "daemon off; user root; pid /tmp/nginx.pid; error_log stderr;\n"
        "events {}\nhttp { access_log off; client_body_temp_path /tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; root /srv; }} }}\n"
    )
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "nginx"\n'
        f'contents = [{{ deb = "nginx-light" }}, {{ deb = "bash" }}, {{ deb = "coreutils" }}, '
        f'"fakeNss", "{tmp_path / "site"}"]\n',  # fakeNss: no postinst made /etc/passwd
    )
    _build(spec, tmp_path / "nginx.tar", cache)
    out = containers.run_image(
        tmp_path / "nginx.tar",
        "bash",
        "-c",
        "nginx -c /srv/nginx.conf & sleep 2; "
        f"exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; "
        "cat <&3; kill %1; wait",
    )
    assert "200 OK" in out and "hello from nginx-light" in out


def test_python3_in_build_image(tmp_path: Path, cache: dict[str, str]) -> None:
    spec = write_spec(tmp_path, 'name = "py"\ncopyToRoot = [{ deb = "python3" }]\n')  # buildImage
    out = tmp_path / "py.tar"
    _build(spec, out, cache)
    skopeo("copy", f"docker-archive:{out}", f"oci:{tmp_path / 'oci'}:v1")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:v1", str(bundle)],
        check=True,
        capture_output=True,
    )
    root = bundle / "rootfs"
    run = subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-c", "import json, ssl; print(json.dumps(1))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stdout == "1\n", run.stderr
    listed = subprocess.run(
        ["dpkg", f"--admindir={root}/var/lib/dpkg", "-l"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lock = json.loads(spec.with_name("spec.toml.lock").read_text())
    rows = {
        ln.split()[1].split(":")[0]: ln.split() for ln in listed.splitlines() if ln[:3] == "ii "
    }
    assert "python3" in rows
    for pkg in lock["packages"]:
        assert rows[pkg["name"]][2] == pkg["version"], rows.get(pkg["name"])


def test_layered_images_from_one_lock_share_libc6(tmp_path: Path, cache: dict[str, str]) -> None:
    lock = tmp_path / "shared.lock"
    one = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "one"\n'
        'contents = [{ deb = "bash" }, { deb = "coreutils" }]\n'
        f'[debian]\nlock = "{lock}"\n',
        "one.toml",
    )
    two = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "two"\ncontents = [{ deb = "coreutils" }]\n'
        f'config = {{ Cmd = ["/bin/ls"] }}\n[debian]\nlock = "{lock}"\n',
        "two.toml",
    )
    _build(one, tmp_path / "one.tar", cache)
    _build(two, tmp_path / "two.tar", cache, "--locked")  # the lock covers coreutils
    a, b = _history(tmp_path / "one.tar"), _history(tmp_path / "two.tar")
    assert a["vmbuild: deb:libc6"] == b["vmbuild: deb:libc6"]
    other = {"VMBUILD_CACHE_DIR": str(tmp_path / "fresh-cache")}
    _build(one, tmp_path / "again.tar", other, "--locked")
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "one.tar").read_bytes()
