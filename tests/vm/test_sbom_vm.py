"""The provenance of a build whose runAsRoot ran in a build VM names the guest kernel
and initramfs that booted, and the SBOM lists what the root step made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import build_ok, write_spec

pytestmark = [pytest.mark.vm]


def test_provenance_names_the_guest_kernel_and_initramfs(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        'name = "prov-vm"\ntag = "1"\nrunAsRoot = "echo made > /made-in-vm"\n',
    )
    out = tmp_path / "img.tar"
    build_ok(
        spec,
        out,
        "--compress",
        "none",
        "--provenance",
        str(tmp_path / "p.json"),
        "--sbom",
        str(tmp_path / "s.json"),
    )
    statement = json.loads((tmp_path / "p.json").read_text())
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    names = [d["name"] for d in deps]
    assert "guest kernel" in names and "guest initramfs" in names
    assert all(len(d["digest"]["sha256"]) == 64 for d in deps)
    files = {f["fileName"] for f in json.loads((tmp_path / "s.json").read_text())["files"]}
    assert "./made-in-vm" in files
