"""The components a build knows it put in: base images, host units, helpers, trees, and
the files no unit claims (a root step's or the customisation layer's output)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.oci.tree import Entry
from vmbuild.sbom import dpkg
from vmbuild.sbom.inventory import Component, FileEntry, Kind, files_of
from vmbuild.sbom.layerfiles import scan


def base_image(
    ref: str, config_bytes: bytes, layers: Sequence[Layer], where: str
) -> list[Component]:
    """The base image as one component (reference, layer digests), and its packages."""
    base = Component(
        ref=f"base:{ref}",
        kind="base-image",
        name=ref,
        sha256=of_bytes(config_bytes).split(":", 1)[1],
        layers=[(layer.diff_id, layer.digest) for layer in layers],
        description=f"base image {ref}, config {of_bytes(config_bytes)}",
    )
    debs = dpkg.packages(dpkg.scan_layers(layers, where))
    base.depends_on = {d.ref for d in debs}
    return [base, *debs]


def host_unit(name: str, tree_entries: Mapping[str, Entry], refs: Iterable[str]) -> Component:
    """A unit of the layered unit graph: a host file, a symlink met on the way, a helper."""
    files = files_of(tree_entries)
    if name.startswith("deb:"):  # the Debian source's merged-/usr links and dpkg database
        return Component(ref=name, kind="file-set", name=name, files=files, depends_on=set(refs))
    if name.startswith("helper:"):
        helper = name.split(":")[1]
        return Component(
            ref=name,
            kind="helper",
            name=helper,
            files=files,
            depends_on=set(refs),
            description=f"the {helper} helper",
        )
    lone = files[0] if len(files) == 1 and len(tree_entries) == 1 else None
    if lone is None and os.path.islink(name):
        what = f"symlink {name} -> {os.readlink(name)}"
    else:
        what = f"host file {name}"
    return Component(
        ref=name,
        kind="host-file",
        name=name,
        sha256=lone.sha256 if lone else None,
        files=files,
        depends_on=set(refs),
        description=what,
    )


def tree_item(ref: str, name: str, tree_entries: Mapping[str, Entry], what: str) -> Component:
    kind: Kind = "helper" if ref.startswith("helper:") else "tree"
    return Component(ref=ref, kind=kind, name=name, files=files_of(tree_entries), description=what)


def unattributed(
    ref: str, files: Sequence[FileEntry], claimed: Sequence[Component], what: str
) -> Component | None:
    """The files no component claims (same path, same contents), as one file set."""
    owned = {(f.path, f.sha256) for c in claimed for f in c.files}
    rest = [f for f in files if (f.path, f.sha256) not in owned]
    if not rest:
        return None
    return Component(ref=ref, kind="file-set", name=what, files=rest, description=what)


def layer_files(layer: Layer, where: str) -> list[FileEntry]:
    return scan(layer, (), where).files


def tar_files(path: Path, where: str) -> list[FileEntry]:
    """The regular files of a plain tar vmbuild packed (the fakeroot layer)."""
    return scan(Layer("", BlobRef.whole(path), "none"), (), where).files
