"""mergeImages: several docker-archives as one, which ``docker load`` loads as all of them.

Every image of every input (an input may itself hold several) becomes one entry of the
output's manifest.json, in input order, with its RepoTags; ``repositories`` lists every
tag. Configs are kept byte for byte (so each image keeps its ID) and layers as stored
(compressed or not, owners and all), each blob once: a layer directory is named by the
blob's digest, so a layer two images share is stored once. Each layer is checked
(digest, diff_id, member names) as its bytes are first read, before or while it is
written (:class:`~vmbuild.oci.layercheck.CheckedBlob`); everything else — every input's
JSON, and that no name:tag is in two images — is checked before the output is opened.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vmbuild import tempdirs
from vmbuild.builders.result import BuildResult
from vmbuild.config.common import EPOCH_DEFAULT, created_epoch
from vmbuild.config.merge import MergeImagesSpec
from vmbuild.errors import SpecError
from vmbuild.oci.archive import write_docker_images
from vmbuild.oci.compress import compressor
from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import Image
from vmbuild.oci.metadata import DockerEntry, docker_entry, split_ref
from vmbuild.oci.output import OutputOptions, atomic_file
from vmbuild.oci.reader import BaseImage, read_docker_images

log = logging.getLogger("vmbuild")

MTIME = created_epoch(EPOCH_DEFAULT)  # the archive members' mtime (the layers keep theirs)


def _label(spec: MergeImagesSpec, i: int) -> str:
    return f"images[{i}] ({spec.images[i]})"


def _check_tags(spec: MergeImagesSpec, inputs: list[list[BaseImage]]) -> None:
    """No name:tag may name two images: docker load would keep only the last."""
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    for i, images in enumerate(inputs):
        for j, image in enumerate(images):
            for ref in image.repo_tags:
                first = seen.setdefault(split_ref(ref), (i, j))
                if first == (i, j):
                    continue
                if first[0] == i:
                    where = f"twice in {_label(spec, i)}: its images {first[1] + 1} and {j + 1}"
                else:
                    where = f"in both {_label(spec, first[0])} and {_label(spec, i)}"
                raise SpecError(
                    f"mergeImages: the tag {ref} is {where}",
                    "merge images with distinct name:tags (rebuild or retag one, or drop it)",
                )


def _entry(image: BaseImage) -> DockerEntry:
    name, tag = split_ref(image.repo_tags[0]) if image.repo_tags else ("", "")
    merged = Image(name, tag, image.config, image.layers, config_raw=image.config_bytes)
    ids = [hex_of(layer.digest) for layer in image.layers]  # a compressed one is read here
    return docker_entry(merged, ids, image.repo_tags)


def build(spec: MergeImagesSpec, out: Path, opts: OutputOptions) -> BuildResult:
    if opts.format != "docker-archive":
        raise SpecError(
            f"mergeImages writes a docker-archive, not {opts.format}",
            "drop --format (docker-archive is the default)",
        )
    with tempdirs.workdir("vmbuild-") as wd:
        inputs = []
        for i, path in enumerate(spec.images):
            spool = Path(wd) / f"input-{i}"
            spool.mkdir()
            inputs.append(read_docker_images(path, spool))
        _check_tags(spec, inputs)
        entries = [_entry(image) for images in inputs for image in images]
        with atomic_file(out) as f, compressor(f, opts.compression, opts.level) as z:
            write_docker_images(entries, z, MTIME)
    log.info("merged %d images from %d archives into %s", len(entries), len(inputs), out)
    return _result(spec, out, entries)


def _result(spec: MergeImagesSpec, out: Path, entries: list[DockerEntry]) -> BuildResult:
    first = next((e for e in entries if e.repo_tags), entries[0])
    name, tag = (first.image.name, first.image.tag) if first.repo_tags else ("", "")
    layers: dict[str, dict[str, str]] = {}
    for e in entries:
        for layer in e.image.layers:
            layers.setdefault(
                layer.digest,
                {"diffId": layer.diff_id, "digest": layer.digest, "mediaType": layer.media_type},
            )
    return BuildResult(
        out=out,
        image_name=name,
        image_tag=tag,
        build_args=spec.build_args or {},
        config_digest=of_bytes(first.image.config_bytes()),
        layers=list(layers.values()),
    )
