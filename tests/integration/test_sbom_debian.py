"""The SBOM of an image built from Debian packages (a signed test repository on
127.0.0.1): every package dpkg-query lists in the built image is there with its version,
architecture, purl, the .deb's SHA256 (as the lock file pins it) and its license."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from tests.support.aptrepo import SUITE, Keys, Pkg, build_deb, serve, write_repo
from tests.support.cli import vmbuild_cli, write_spec
from tests.support.sbomcheck import spdx_problems

COPYRIGHT = (
    b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    b"Files: *\nCopyright: 2026 nobody\nLicense: MIT\n"
)
PACKAGES = [
    Pkg("libbar", files={"usr/lib/x86_64-linux-gnu/libbar.so.1": b"bar\n"}),
    Pkg(
        "app",
        version="1.2-3",
        fields={"Depends": "libbar, data"},
        files={"bin/app": b"#!/bin/sh\n", "usr/share/doc/app/copyright": COPYRIGHT},
    ),
    Pkg("data", arch="all", files={"usr/share/data/x": b"x\n"}),
]


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack_oci(layout: Path, root: Path) -> None:
    """The built image's layers, unpacked here (the test's own output)."""
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    for desc in manifest["layers"]:
        with tarfile.open(blobs / desc["digest"][7:]) as tar:
            tar.extractall(root, filter="tar")


def test_every_installed_package_is_in_the_sbom(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    keys = Keys(tmp_path / "gnupg")
    write_repo(tmp_path / "www", [build_deb(p, build) for p in PACKAGES], keys)
    with serve(tmp_path / "www") as url:
        spec = write_spec(
            tmp_path,
            'function = "buildLayeredImage"\nname = "debs"\ntag = "1"\n'
            'contents = [{ deb = "app" }]\n'
            f'[debian]\nmirror = "{url}"\nsuite = "{SUITE}"\nkeyring = "{keys.keyring}"\n',
        )
        out = tmp_path / "img.oci"
        proc = vmbuild_cli(
            "build",
            spec,
            "--out",
            out,
            "--format",
            "oci",
            "--sbom",
            tmp_path / "s.json",
            "--provenance",
            tmp_path / "p.json",
            env={"VMBUILD_CACHE_DIR": str(tmp_path / "cache")},
        )
        assert proc.returncode == 0, proc.stderr
    assert spdx_problems(tmp_path / "s.json") == []
    doc = json.loads((tmp_path / "s.json").read_text())
    by_name = {p["name"]: p for p in doc["packages"]}
    locked = {
        p["name"]: p for p in json.loads(spec.with_name("spec.toml.lock").read_text())["packages"]
    }
    root = tmp_path / "root"
    unpack_oci(out, root)
    listed = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package} ${Version} ${Architecture}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    installed = [line.split() for line in listed if line.startswith("ii")]
    assert {name for _, name, _, _ in installed} == {"app", "libbar", "data"}
    for _, name, version, arch in installed:
        package = by_name[name]
        assert package["versionInfo"] == version
        purls = [r["referenceLocator"] for r in package["externalRefs"]]
        assert purls == [f"pkg:deb/debian/{name}@{version}?arch={arch}"]
        sums = {c["algorithm"]: c["checksumValue"] for c in package["checksums"]}
        assert sums["SHA256"] == locked[name]["sha256"]
    assert by_name["app"]["licenseDeclared"] == "MIT"
    provenance = json.loads((tmp_path / "p.json").read_text())
    inputs = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    lock_file = spec.with_name("spec.toml.lock")
    assert {
        "name": "lock file",
        "uri": lock_file.name,
        "digest": {"sha256": sha256_of(lock_file)},
    } in inputs
    ids = {p["name"]: p["SPDXID"] for p in doc["packages"]}
    depends = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "DEPENDS_ON"
    }
    assert (ids["app"], ids["libbar"]) in depends and (ids["app"], ids["data"]) in depends
