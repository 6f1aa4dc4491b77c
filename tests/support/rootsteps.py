"""Building a spec through the CLI and unpacking the result with skopeo and umoci."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import vmbuild_cli
from tests.support.containers import skopeo


def build(tmp_path: Path, text: str, name: str = "out.tar", *extra: str) -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text)
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", *extra)
    assert proc.returncode == 0, proc.stderr
    return out


def umoci_rootfs(tmp_path: Path, archive: Path, tag: str = "t") -> Path:
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'oci'}:{tag}")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"
