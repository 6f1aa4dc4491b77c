"""A real registry (Debian's docker-registry) on 127.0.0.1 for tests and the benchmark,
and small images to put in it (made here, pushed with skopeo)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from vmbuild.oci.archive import write_docker_archive
from vmbuild.oci.image import BlobRef, Image, Layer

REGISTRY = "/usr/bin/docker-registry"


def have_tools() -> bool:
    return all(shutil.which(t) for t in (REGISTRY, "skopeo"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str | None = None
    password: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def skopeo_creds(self) -> list[str]:
        return [f"--dest-creds={self.user}:{self.password}"] if self.user else []

    def auth_header(self) -> dict[str, str]:
        if not self.user:
            return {}
        raw = f"{self.user}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _yaml(obj: Any, indent: int = 0) -> str:
    """Enough YAML for the registry's config (JSON is YAML, but keep it readable)."""
    lines = []
    for key, value in obj.items():
        pad = "  " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:\n{_yaml(value, indent + 1)}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value)}")
    return "\n".join(lines)


@contextlib.contextmanager
def registry(
    tmp: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    auth: dict[str, Any] | None = None,
    http_extra: dict[str, Any] | None = None,
    access_log: bool = False,
) -> Iterator[Registry]:
    """Run docker-registry on a free port with storage in ``tmp``; stop it afterwards.
    ``access_log``: every request is a line in ``tmp/registry.log`` (see
    :func:`requests_logged`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    root = tmp / "storage"
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": not access_log}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret", **(http_extra or {})},
    }
    if htpasswd:
        user, password = htpasswd
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (tmp / "htpasswd").write_text(f"{user}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(tmp / "htpasswd")}}
    if auth:
        config["auth"] = auth
    (tmp / "config.yml").write_text(_yaml(config) + "\n")
    log = open(tmp / "registry.log", "wb")  # noqa: SIM115
    # The registry reads REGISTRY_* variables as config overrides: keep ours out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.Popen(
        [REGISTRY, "serve", str(tmp / "config.yml")], stdout=log, stderr=log, env=env
    )
    reg = Registry(root, port, proc, *(htpasswd or (None, None)))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                scheme = "https" if http_extra and "tls" in http_extra else "http"
                urllib.request.urlopen(
                    f"{scheme}://{reg.host}/v2/", timeout=1, context=_insecure()
                ).close()
                break
            except urllib.error.HTTPError as exc:
                exc.close()
                break  # 401: up, and wants a login
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "registry.log").read_text()) from None
                time.sleep(0.05)
        yield reg
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def requests_logged(tmp: Path) -> list[str]:
    """``METHOD PATH`` of each request the registry of ``registry(tmp, access_log=True)``
    has logged so far (Apache's combined format: ``"HEAD /v2/... HTTP/1.1"``)."""
    text = (tmp / "registry.log").read_text(errors="replace")
    found = []
    for line in text.splitlines():
        if '"' in line:
            method, _, rest = line.split('"', 2)[1].partition(" ")
            if method in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"):
                found.append(f"{method} {rest.rsplit(' ', 1)[0]}")
    return found


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def make_archive(
    out: Path,
    layers: Sequence[dict[str, bytes]],
    *,
    arch: str = "amd64",
    name: str = "test/img",
    tag: str = "latest",
    variant: str | None = None,
) -> Path:
    """A docker-archive with uncompressed layers (skopeo gzips them when it pushes)."""
    work = out.with_suffix(".layers")
    work.mkdir(parents=True, exist_ok=True)
    image_layers = []
    for i, files in enumerate(layers):
        data = layer_tar(files)
        path = work / f"{i}.tar"
        path.write_bytes(data)
        diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
        image_layers.append(Layer(diff_id, BlobRef.whole(path), "none"))
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image_layers]},
        "created": "1970-01-01T00:00:01Z",
    }
    if variant:
        config["variant"] = variant
    with open(out, "wb") as f:
        write_docker_archive(Image(name, tag, config, image_layers), f, 1)
    return out


def skopeo(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    proc = subprocess.run(["skopeo", *args], capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)}: {proc.stderr.decode()}")
    return proc


def push_archive(reg: Registry, archive: Path, ref: str, *extra: str) -> None:
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        *reg.skopeo_creds(),
        *extra,
        f"docker-archive:{archive}",
        f"docker://{reg.host}/{ref}",
    )


def http(
    reg: Registry,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://{reg.host}{path}",
        data=body,
        method=method,
        headers={**reg.auth_header(), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)


def manifest_of(reg: Registry, repo: str, ref: str) -> tuple[str, bytes, str]:
    """(digest, raw bytes, media type) of a manifest."""
    status, _, body = http(reg, "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert status == 200, body
    return "sha256:" + hashlib.sha256(body).hexdigest(), body, json.loads(body)["mediaType"]


def put_index(
    reg: Registry, repo: str, tag: str, entries: Sequence[tuple[str, str, str | None]]
) -> str:
    """PUT an OCI index of (tag, arch, variant) images already in ``repo``; its digest."""
    manifests = []
    for ref, arch, variant in entries:
        digest, raw, media_type = manifest_of(reg, repo, ref)
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        manifests.append(
            {"mediaType": media_type, "digest": digest, "size": len(raw), "platform": platform}
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    ).encode()
    status, _, body = http(
        reg,
        "PUT",
        f"/v2/{repo}/manifests/{tag}",
        index,
        {"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    assert status == 201, body
    return "sha256:" + hashlib.sha256(index).hexdigest()
