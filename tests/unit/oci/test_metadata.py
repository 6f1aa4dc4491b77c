"""The one metadata writer: the exact bytes each archive, pull and push have always had."""

from __future__ import annotations

from vmbuild.oci.layout import MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST
from vmbuild.oci.metadata import descriptor, oci_index_json, oci_manifest_json, split_ref

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fill(template: str, **values: str) -> bytes:
    for key, value in values.items():
        template = template.replace(key, value)
    return template.encode()


def test_manifest_is_canonical_json() -> None:
    got = oci_manifest_json(descriptor(MT_OCI_CONFIG, D1, 10), [descriptor(LAYER, D2, 20)])
    assert got == fill(
        '{"config":{"digest":"D1","mediaType":"MTC","size":10},'
        '"layers":[{"digest":"D2","mediaType":"MTL","size":20}],'
        '"mediaType":"MTM","schemaVersion":2}',
        D1=D1, D2=D2, MTC=MT_OCI_CONFIG, MTL=LAYER, MTM=MT_OCI_MANIFEST,
    )  # fmt: skip


def test_index_names_the_image_for_containerd_and_skopeo() -> None:
    desc = descriptor(MT_OCI_MANIFEST, D1, 5)
    body = (
        '"manifests":[{"annotations":{"io.containerd.image.name":"a/b:t",'
        '"org.opencontainers.image.ref.name":"t"},"digest":"D1","mediaType":"MTM","size":5}]'
    )
    assert oci_index_json(desc, "a/b:t", "t") == fill(
        "{" + body + ',"mediaType":"MTI","schemaVersion":2}', D1=D1, MTM=MT_OCI_MANIFEST,
        MTI=MT_OCI_INDEX,
    )  # fmt: skip
    # pullImage's OCI archives never had the index's own mediaType
    assert oci_index_json(desc, "a/b:t", "t", None) == fill(
        "{" + body + ',"schemaVersion":2}', D1=D1, MTM=MT_OCI_MANIFEST
    )


def test_split_ref() -> None:
    assert split_ref("host:5000/a/b:1.0") == ("host:5000/a/b", "1.0")
    assert split_ref("host:5000/a/b") == ("host:5000/a/b", "latest")
