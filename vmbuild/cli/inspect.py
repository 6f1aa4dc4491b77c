"""``vmbuild inspect ARCHIVE [--json]``: what an image archive or layout holds.

Any format vmbuild reads (docker-archive plain, gzip or zstd; OCI archive; OCI layout
directory) through :mod:`vmbuild.oci.reader`, so every digest and name is checked as for
a base image. Each layer is read once to check it and once to count its members (the
tar headers only; nothing is unpacked).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path
from typing import Any

from vmbuild import tempdirs
from vmbuild.cli.common import add_command
from vmbuild.errors import ImageError
from vmbuild.oci.compress import decompressor
from vmbuild.oci.image import Layer
from vmbuild.oci.layercheck import CheckedBlob, read_errors
from vmbuild.oci.reader import BaseImage, read_docker_images, read_image

CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "User", "WorkingDir", "ExposedPorts", "Labels")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "inspect",
        help="show an image archive's names, config and layers",
        description="Show what ARCHIVE holds: its name:tag list, the config (Cmd, "
        "Entrypoint, Env, User, WorkingDir, created, architecture) and each layer's "
        "diff_id, size and file count. ARCHIVE is a docker-archive (plain, .gz or .zst), "
        "an OCI archive or an OCI layout directory; every digest is checked.",
        examples=[
            "vmbuild inspect redis-7.tar.gz",
            "vmbuild inspect ./layout --json | jq '.[0].layers[].files'",
        ],
    )
    p.add_argument("archive", type=Path, help="the image archive or OCI layout directory")
    p.add_argument("--json", action="store_true", help="print it as JSON (a list of images)")
    p.set_defaults(func=cmd_inspect)


def _files(layer: Layer) -> int:
    """How many members the layer's tar has (it is checked first)."""
    blob = layer.blob
    if not isinstance(blob, CheckedBlob):
        return 0
    blob.verify()
    count = 0
    with blob.ref.reader() as raw:
        try:
            with tarfile.open(fileobj=decompressor(raw, layer.compression), mode="r|") as tar:
                for _member in tar:
                    count += 1
        except read_errors() as exc:
            raise ImageError(f"{blob.where}: unreadable: {exc}", "the image is corrupt") from exc
    return count


def _describe(image: BaseImage) -> dict[str, Any]:
    config = image.config.get("config") or {}
    return {
        "names": list(image.repo_tags),
        "created": image.config.get("created"),
        "architecture": image.config.get("architecture"),
        "os": image.config.get("os"),
        "config": {k: config[k] for k in CONFIG_KEYS if k in config},
        "layers": [
            {
                "diffId": layer.diff_id,
                "digest": layer.digest,
                "size": layer.blob.size,
                "compression": layer.compression,
                "files": _files(layer),
            }
            for layer in image.layers
        ],
    }


def _images(path: Path, workdir: Path) -> list[BaseImage]:
    if path.is_file():
        try:
            return read_docker_images(path, workdir)
        except ImageError as exc:
            if "OCI archive" not in exc.message:
                raise
    return [read_image(path, workdir)]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _print(info: dict[str, Any]) -> None:
    print(f"names: {', '.join(info['names']) or '(untagged)'}")
    print(f"created: {info['created']}  architecture: {info['architecture']}  os: {info['os']}")
    for key, value in info["config"].items():
        print(f"{key}: {json.dumps(value)}")
    print(f"layers: {len(info['layers'])}")
    for i, layer in enumerate(info["layers"], 1):
        print(
            f"  {i:>2}  {layer['diffId']}  {_size(layer['size']):>10}  "
            f"{layer['files']} files  ({layer['compression']})"
        )


def cmd_inspect(args: argparse.Namespace) -> int:
    if not args.archive.exists():
        raise ImageError(f"{args.archive} does not exist", "give an image archive or layout")
    with tempdirs.workdir() as workdir:
        images = [_describe(image) for image in _images(args.archive, workdir)]
    if args.json:
        print(json.dumps(images, indent=2))
        return 0
    for i, info in enumerate(images):
        if i:
            print()
        _print(info)
    return 0
