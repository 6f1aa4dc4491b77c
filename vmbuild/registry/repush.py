"""A re-push of an unchanged image: one HEAD of the manifest, nothing read from the image.

After a push, :func:`remember` notes what was pushed for the image's file identity and
the push's options: the manifest's digest and media type and how many blobs it names.
A later push of the same file with the same options first asks the registry what the
destination holds (:func:`unchanged`: a HEAD of its tag or digest); when the registry
answers with that very digest, the push is done. The registry's own answer makes it
correct without trusting any local record of earlier pushes: the manifest is the
image, and registries (distribution's docker-registry among them) refuse a manifest
whose blobs they lack and keep a tagged manifest's blobs from garbage collection. Any
other answer (another digest, none, an error) is a full push, which then sends only the
blobs that are missing.

The identity is (device, inode, size, mtime_ns, ctime_ns) of the archive, or of an OCI
layout's ``index.json`` (a layout's blobs are content-addressed; only the index says
which manifest is the image). It stands for the content because every change to a
file's bytes or metadata sets its ctime to the kernel's clock, and user space has no
call that sets ctime (``utime`` sets mtime and atime, and updates ctime itself); a file
replaced by a rename is another inode. Images with referrers (an OCI layout holding
SBOMs or provenance) are not remembered: their push is more than one manifest.

This module imports only what the check needs (the HTTP client, the cache's JSON
files): a re-push costs Python's start-up, one file read and the request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from vmbuild.cache import cache_dir, file_identity, read_json, write_json
from vmbuild.errors import RegistryError
from vmbuild.oci.layout import MT_DOCKER_MANIFEST, MT_OCI_MANIFEST
from vmbuild.registry.auth import Credentials
from vmbuild.registry.client import Client
from vmbuild.registry.reference import Reference

# Bumped when what push makes of the same archive changes (manifest shape, layer
# compression), so that older records are not used.
FORMAT = "1"


class PushResult(NamedTuple):
    """What ``vmbuild push`` reports."""

    digest: str  # of the manifest
    uploaded: int  # blobs sent
    mounted: int
    present: int


class Pushed(NamedTuple):
    """What a push made of an image: its manifest and the number of distinct blobs."""

    digest: str
    media_type: str
    blobs: int


def identity(image: Path) -> str | None:
    """The identity of ``image`` (see the module docstring); None when it has none."""
    target = image / "index.json" if image.is_dir() else image
    try:
        st = os.stat(target)
    except OSError:
        return None
    return "-".join(str(p) for p in file_identity(st))


def _record(ident: str, compression: str, level: int | None) -> Path:
    # Named by its parts, not their hash: no hashlib import on this path.
    return cache_dir() / "pushed" / f"v{FORMAT}-{ident}-{compression}-{level}.json"


def remember(ident: str | None, compression: str, level: int | None, pushed: Pushed) -> None:
    """Note that pushing the image whose identity was ``ident`` when the push began (a
    change while it ran is then a change after it) with these options made ``pushed``."""
    if ident is not None:
        write_json(_record(ident, compression, level), pushed._asdict())


def recall(image: Path, compression: str, level: int | None) -> Pushed | None:
    """What pushing ``image`` with these options made last time, if it is known."""
    ident = identity(image)
    data = read_json(_record(ident, compression, level)) if ident is not None else None
    if not isinstance(data, dict):
        return None
    digest, media_type, blobs = data.get("digest"), data.get("media_type"), data.get("blobs")
    if isinstance(digest, str) and isinstance(media_type, str) and isinstance(blobs, int):
        return Pushed(digest, media_type, blobs)
    return None


def unchanged(
    image: Path,
    dest: Reference,
    compression: str,
    level: int | None,
    *,
    tls_verify: bool,
    credentials: Credentials | None,
) -> Pushed | None:
    """What ``dest`` already holds when it is exactly what pushing ``image`` would make;
    None when a push is needed (or cannot be known to be needless)."""
    pushed = recall(image, compression, level)
    if pushed is None:
        return None
    if credentials is None:
        from vmbuild.registry.auth import load_credentials

        credentials = load_credentials(dest.repo.host, dest.repo.path)
    client = Client(dest.repo.api_host, credentials=credentials, tls_verify=tls_verify)
    repo = dest.repo.path
    try:
        resp = client.head(
            f"/v2/{repo}/manifests/{dest.reference}",
            scope=f"repository:{repo}:pull,push",
            what=f"push to {dest}: manifest",
            accept=f"{pushed.media_type}, {MT_OCI_MANIFEST}, {MT_DOCKER_MANIFEST}",
        )
    except RegistryError:
        return None  # the push itself will say what is wrong
    finally:
        client.close()
    if resp.status == 200 and resp.getheader("Docker-Content-Digest") == pushed.digest:
        return pushed
    return None
