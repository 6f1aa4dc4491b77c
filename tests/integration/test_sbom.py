"""SBOM and provenance through the real CLI: validated by spdx-tools and by
cyclonedx-python-lib's schema validator, identical bytes from two builds, the dpkg
database of a base image, OCI referrers, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from packageurl import PackageURL

from tests.support.cli import build_ok, vmbuild_cli, write_spec
from tests.support.images import image_from_layers, layer_tar
from tests.support.sbomcheck import cyclonedx_problem, spdx_problems

BASH = shutil.which("bash") or "/bin/bash"


def spec_with_tree(tmp: Path, extra: str = "") -> Path:
    (tmp / "root/etc").mkdir(parents=True, exist_ok=True)
    (tmp / "root/etc/greeting").write_text("hello\n")
    return write_spec(
        tmp,
        f'name = "sbom-test"\ntag = "1"\ncopyToRoot = ["./root", "binSh"]\n{extra}',
    )


def spdx_valid(path: Path) -> dict[str, object]:
    assert spdx_problems(path) == []
    value: dict[str, object] = json.loads(path.read_text())
    return value


def test_spdx_validates_lists_units_and_is_reproducible(tmp_path: Path) -> None:
    spec = spec_with_tree(tmp_path, 'extraCommands = "echo made > made.txt"\n')
    build_ok(spec, tmp_path / "a.tar.gz", "--sbom", str(tmp_path / "a.json"))
    build_ok(spec, tmp_path / "b.tar.gz", "--sbom", str(tmp_path / "b.json"))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    doc = spdx_valid(tmp_path / "a.json")
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:01Z"  # type: ignore[index]
    names = {p["name"] for p in doc["packages"]}  # type: ignore[attr-defined]
    assert {"sbom-test:1", str(tmp_path / "root"), "binSh"} <= names
    files = {f["fileName"]: f for f in doc["files"]}  # type: ignore[attr-defined]
    sums = {c["algorithm"]: c["checksumValue"] for c in files["./etc/greeting"]["checksums"]}
    assert sums["SHA256"] == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert "./made.txt" in files  # extraCommands' output: listed as an unattributed file set


def test_cyclonedx_of_a_layered_image_validates(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        f'function = "buildLayeredImage"\nname = "cdx"\ntag = "1"\n'
        f'contents = [{{ path = "{BASH}", closure = true }}]\n',
    )
    out = tmp_path / "img.tar.gz"
    build_ok(spec, out, "--sbom", str(tmp_path / "s.json"), "--sbom-format", "cyclonedx")
    text = (tmp_path / "s.json").read_text()
    assert cyclonedx_problem(text) is None
    again = tmp_path / "again.tar.gz"
    build_ok(spec, again, "--sbom", str(tmp_path / "s2.json"), "--sbom-format", "cyclonedx")
    assert (tmp_path / "s2.json").read_text() == text  # the same bytes from another build
    build_ok(spec, tmp_path / "img.oci", "--format", "oci", "--sbom", str(tmp_path / "s.spdx.json"))
    spdx_valid(tmp_path / "s.spdx.json")
    bom = json.loads(text)
    refs = {c["bom-ref"] for c in bom["components"]}
    real = str(Path(BASH).resolve())
    assert real in refs
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert any("libc.so" in d for d in deps[real])  # the unit graph's edges


def test_spec_sbom_and_provenance_beside_the_output(tmp_path: Path) -> None:
    spec = spec_with_tree(tmp_path, "sbom = true\nprovenance = true\n")
    out = tmp_path / "img.tar"
    build_ok(spec, out, "--compress", "none")
    spdx_valid(tmp_path / "img.tar.spdx.json")
    statement = json.loads((tmp_path / "img.tar.intoto.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["spec"]["name"] == "sbom-test"
    deps = {d["name"]: d["digest"]["sha256"] for d in build["resolvedDependencies"]}
    import hashlib

    assert deps["spec"] == hashlib.sha256(spec.read_bytes()).hexdigest()
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects["img.tar"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_dpkg_packages_of_the_base_all_appear(tmp_path: Path) -> None:
    # the host's own dpkg database, its first 60 packages (spdx-tools' validator is
    # quadratic: the whole database takes it a minute)
    paragraphs = Path("/var/lib/dpkg/status").read_text().split("\n\n")[:60]
    status = "\n\n".join(paragraphs).strip() + "\n"
    layer = layer_tar(tmp_path / "dpkg.tar", [("var/lib/dpkg/status", "f", status)])
    base = image_from_layers(tmp_path / "base.tar", [layer], name="debianish:1")
    spec = spec_with_tree(tmp_path, f'fromImage = "{base}"\n')
    out = tmp_path / "img.oci"
    build_ok(spec, out, "--format", "oci", "--sbom", str(tmp_path / "s.json"))
    doc = spdx_valid(tmp_path / "s.json")
    versions = {p["name"]: p.get("versionInfo") for p in doc["packages"]}  # type: ignore[attr-defined]
    purls = {
        (purl.name, purl.version, purl.qualifiers.get("arch"))
        for p in doc["packages"]  # type: ignore[attr-defined]
        for r in p.get("externalRefs", [])
        for purl in [PackageURL.from_string(r["referenceLocator"])]
    }
    # dpkg -l of the built image, unpacked here (the test's own trusted output)
    root = tmp_path / "unpacked"
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    for desc in manifest["layers"]:
        with tarfile.open(out / "blobs/sha256" / desc["digest"][7:]) as tar:
            tar.extractall(root, filter="tar")
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
    assert len(installed) > 20
    for _, name, version, arch in installed:
        assert versions.get(name) == version, name
        assert (name, version, arch) in purls
    # vmbuild sbom prints the same document back from the layout
    proc = vmbuild_cli("sbom", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode() == (tmp_path / "s.json").read_bytes()
    # and, for the base (no SBOM attached), an inventory from its dpkg database
    proc = vmbuild_cli("sbom", base)
    assert proc.returncode == 0, proc.stderr
    names = {p["name"] for p in json.loads(proc.stdout)["packages"]}
    assert {name for _, name, _, _ in installed} <= names


def test_oci_archive_carries_referrers(tmp_path: Path) -> None:
    spec = spec_with_tree(tmp_path)
    out = tmp_path / "img.oci.tar"
    args = ["--format", "oci-archive", "--sbom", str(tmp_path / "s.json")]
    build_ok(spec, out, *args, "--provenance", str(tmp_path / "p.json"))
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        image, *artifacts = index["manifests"]
        kinds = {a["artifactType"] for a in artifacts}
        assert kinds == {"application/spdx+json", "application/vnd.in-toto+json"}
        for a in artifacts:
            blob = tar.extractfile(f"blobs/sha256/{a['digest'][7:]}")
            assert blob is not None
            manifest = json.load(blob)
            assert manifest["subject"]["digest"] == image["digest"]
    if shutil.which("skopeo"):
        proc = subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{out}:1"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    proc = vmbuild_cli("sbom", out)
    assert proc.stdout.encode() == (tmp_path / "s.json").read_bytes()


def test_unknown_sbom_format_is_one_line(tmp_path: Path) -> None:
    spec = spec_with_tree(tmp_path)
    out = tmp_path / "img.tar.gz"
    proc = vmbuild_cli("build", spec, "--out", out, "--sbom", tmp_path / "s", "--sbom-format", "x")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "vmbuild: error: unknown --sbom-format 'x' -- use one of spdx, cyclonedx"
    ]
    assert not out.exists() and not (tmp_path / "s").exists()


def test_unwritable_sbom_path_fails_before_any_work(tmp_path: Path) -> None:
    spec = spec_with_tree(tmp_path)
    out = tmp_path / "img.tar.gz"
    proc = vmbuild_cli("build", spec, "--out", out, "--sbom", tmp_path / "missing/dir/s.json")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing/dir does not exist" in lines[0], proc.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.tools
def test_referrers_pushed_to_a_real_registry(tmp_path: Path) -> None:
    from tests.support.registry_fixture import have_tools, http, manifest_of, registry

    if not have_tools():
        pytest.skip("needs docker-registry and skopeo")
    spec = spec_with_tree(tmp_path)
    out = tmp_path / "img.oci.tar"
    build_ok(spec, out, "--format", "oci-archive", "--sbom", str(tmp_path / "s.json"))
    with registry(tmp_path / "reg") as reg:
        proc = vmbuild_cli("push", out, f"docker://{reg.host}/sbom/app:1")
        assert proc.returncode == 0, proc.stderr
        digest, _, _ = manifest_of(reg, "sbom/app", "1")
        # docker-registry 2.8 has no referrers API: the fallback tag lists them
        status, _, _ = http(reg, "GET", f"/v2/sbom/app/referrers/{digest}")
        assert status == 404
        status, _, body = http(
            reg,
            "GET",
            f"/v2/sbom/app/manifests/sha256-{digest[7:]}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        assert status == 200, body
        listed = json.loads(body)["manifests"]
        assert {m["artifactType"] for m in listed} == {
            "application/spdx+json",
            "application/vnd.in-toto+json",
        }
        spdx_entry = next(m for m in listed if m["artifactType"] == "application/spdx+json")
        status, _, raw = http(
            reg,
            "GET",
            f"/v2/sbom/app/manifests/{spdx_entry['digest']}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert status == 200, raw
        artifact = json.loads(raw)
        assert artifact["subject"]["digest"] == digest
        status, _, doc = http(reg, "GET", f"/v2/sbom/app/blobs/{artifact['layers'][0]['digest']}")
        assert status == 200
        assert doc == (tmp_path / "s.json").read_bytes()
        tags = json.loads(http(reg, "GET", "/v2/sbom/app/tags/list")[2])["tags"]
        assert f"sha256-{digest[7:]}" in tags
