"""mergeImages' spec: ``images`` (docker-archives, any compression) and ``compressor``.

nixpkgs' ``dockerTools.mergeImages`` (beyond the manual) takes a list of images and
gives one docker-archive holding all of them. Here ``images`` are archive paths,
relative ones against the spec's directory. Each must exist and be a file; whether it
is a docker-archive is found when it is read. The output is compressed like the last
input unless ``compressor`` (or ``--compress``) says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild.config.common import Fields, get_compressor
from vmbuild.errors import SpecError
from vmbuild.oci.compress import Compression, sniff

HINT = 'give images = ["a.tar.gz", "b.tar.zst"], docker-archives (docker save)'


@dataclass(frozen=True)
class MergeImagesSpec:
    images: list[Path]
    compressor: Compression | None = None
    last_compression: Compression = "gzip"  # the last input's: the default output's
    build_args: dict[str, Any] | None = None


def _image(fields: Fields, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SpecError(
            f"{fields.where}: {key} must be the path of an image archive, got {value!r}", HINT
        )
    path = fields.resolve(value)
    if not path.exists():
        raise SpecError(
            f"{fields.where}: {key} {path} does not exist",
            "fix the path (relative paths resolve against the spec file's directory)",
        )
    if path.is_dir():
        what = "an OCI layout directory" if (path / "index.json").exists() else "a directory"
        raise SpecError(
            f"{fields.where}: {key} {path} is {what}, not a docker-archive",
            "mergeImages takes docker-archive files: skopeo copy oci:DIR docker-archive:FILE",
        )
    if not path.is_file():
        raise SpecError(f"{fields.where}: {key} {path} is not a regular file", HINT)
    return path


def _compression_of(fields: Fields, path: Path, key: str) -> Compression:
    try:
        with open(path, "rb") as f:
            return sniff(f.read(4))
    except OSError as exc:
        raise SpecError(f"{fields.where}: cannot read {key} {path}: {exc.strerror}", HINT) from exc


def parse(fields: Fields, function: str = "mergeImages") -> MergeImagesSpec:
    raw = fields.peek("images")
    if not fields.has("images") or not isinstance(raw, list) or not raw:
        got = (
            "missing" if raw is None else "empty" if raw == [] else f"{type(raw).__name__} {raw!r}"
        )
        raise SpecError(
            f"{fields.where}: images must be a non-empty list of image archives, got {got}",
            HINT,
        )
    images = fields.get_list("images", lambda v, key: _image(fields, v, key))
    spec = MergeImagesSpec(
        images=images,
        compressor=get_compressor(fields),
        last_compression=_compression_of(fields, images[-1], f"images[{len(images) - 1}]"),
        build_args=dict(fields.given),
    )
    fields.finish()
    return spec
