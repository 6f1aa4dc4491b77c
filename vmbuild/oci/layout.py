"""The names the image formats fix: media types, annotation keys and whiteout markers.

Media types are the OCI image spec's and Docker's manifest v2 schema 2's; the whiteout
markers are the OCI layer format's (``.wh.NAME`` hides NAME in the layers below,
``.wh..wh..opq`` everything they put in its directory).
"""

from __future__ import annotations

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# Annotation keys (the OCI image spec's pre-defined ones, and containerd's image name).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

WHITEOUT = ".wh."  # prefix: ``.wh.NAME`` hides NAME
OPAQUE = ".wh..wh..opq"  # hides what lower layers hold in its directory
