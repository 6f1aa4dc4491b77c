"""Referrer artifacts in an OCI layout: listed after the image with the image manifest
as their subject, read back checked against their digests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.images import layer_tar
from vmbuild.errors import ImageError
from vmbuild.oci.archive import write_oci_layout
from vmbuild.oci.digest import of_file
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.referrers import Artifact, is_oci, read_referrers


def layout(tmp: Path) -> Path:
    tar = layer_tar(tmp / "l.tar", [("etc/x", "f", "x\n")])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [of_file(tar)]},
    }
    image = Image("t", "1", config, [Layer(of_file(tar), BlobRef.whole(tar), "none")])
    out = tmp / "layout"
    write_oci_layout(image, out, [Artifact("application/spdx+json", b"{}\n", {"a": "b"})])
    return out


def test_round_trip(tmp_path: Path) -> None:
    out = layout(tmp_path)
    assert is_oci(out)
    index = json.loads((out / "index.json").read_text())
    image, artifact = index["manifests"]
    assert "org.opencontainers.image.ref.name" not in artifact.get("annotations", {})
    [found] = read_referrers(out, tmp_path)
    assert (found.artifact_type, found.data, found.subject) == (
        "application/spdx+json",
        b"{}\n",
        image["digest"],
    )


def test_an_altered_document_is_refused(tmp_path: Path) -> None:
    out = layout(tmp_path)
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][1]["digest"][7:]).read_text())
    (out / "blobs/sha256" / manifest["layers"][0]["digest"][7:]).write_bytes(b"[]\n")
    with pytest.raises(ImageError, match="does not match its digest"):
        read_referrers(out, tmp_path)
