"""push and prefetch through an HTTPS proxy, end to end: a real docker-registry speaking TLS
on 127.0.0.1 with a certificate for the made-up name ``registry.test``, reachable under
that name only through the test's CONNECT proxy (which maps it to 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.proxy import NAME, FakeProxy, make_cert
from tests.support.registry_fixture import have_tools, make_archive, registry

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not have_tools(), reason="needs docker-registry and skopeo"),
]


def test_push_and_pull_through_proxy(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, NAME)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k != "REQUEST_METHOD"
    }
    env.update(
        HTTPS_PROXY="",  # set below, once the proxy runs
        SSL_CERT_FILE=str(cert),  # the registry's certificate is checked, through the tunnel
        REGISTRY_AUTH_FILE=str(tmp_path / "no-auth.json"),
        VMBUILD_CACHE_DIR=str(tmp_path / "cache"),
    )
    tls = {"tls": {"certificate": str(cert), "key": str(key)}}
    with registry(tmp_path / "reg", http_extra=tls) as reg:
        proxy = FakeProxy()
        try:
            env["HTTPS_PROXY"] = proxy.url
            archive = make_archive(
                tmp_path / "a.tar", [{"etc/hello": b"hi\n" * 100}, {"bin/data": os.urandom(99_999)}]
            )

            def vmbuild(*args: str) -> subprocess.CompletedProcess[str]:
                res = subprocess.run(
                    [sys.executable, "-m", "vmbuild", *args],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=False,
                    timeout=300,
                )
                assert res.returncode == 0, res.stderr
                return res

            proxied = f"{NAME}:{reg.port}"
            vmbuild("push", str(archive), f"docker://{proxied}/proxied/img:1")
            pushed = len(proxy.log)
            assert pushed > 0 and set(proxy.log) == {("CONNECT", proxied)}

            final = ("--final-image-name", "proxied/img", "--final-image-tag", "1", "-q")
            args = ("prefetch", "--image-tag", "1", *final, "--image-name")
            via_proxy = tomllib.loads(vmbuild(*args, f"{proxied}/proxied/img").stdout)
            assert len(proxy.log) > pushed and set(proxy.log) == {("CONNECT", proxied)}
            # The same registry on 127.0.0.1: never proxied, and the same image.
            seen = len(proxy.log)
            env["VMBUILD_CACHE_DIR"] = str(tmp_path / "other-cache")
            direct = tomllib.loads(vmbuild(*args, f"{reg.host}/proxied/img").stdout)
            assert len(proxy.log) == seen
            assert via_proxy["hash"] == direct["hash"]
            assert via_proxy["imageDigest"] == direct["imageDigest"]
        finally:
            proxy.stop()
