"""Pulling: fetch an image by digest and write it as pullImage's archive, hash-checked.

The docker-archive holds the registry's config byte for byte (so the image ID is the
config digest, as after ``docker pull``) and the layers uncompressed, like ``skopeo copy
docker://… docker-archive:…`` (what nixpkgs' pullImage runs). Its tar metadata is
fixed, so the same digest and final name/tag give the same bytes anywhere. Each layer
tar is checked against its diff_id by prefetch and by any build whose hash does not
match; a build whose hash matches has the very bytes such a check passed.
``--format oci-archive`` keeps the registry's manifest, its digest and the compressed
blobs as they are. Either way every layer's tar headers are read as it is written out
(:mod:`.layerscan`): a layer with unsafe names (absolute, ``..``, links climbing out), or
that is not a tar, fails the pull, and the archive is not kept. Every digest the
registry names (descriptors, diff_ids) is checked against the digest grammar before it
becomes part of a path or a member name. The spec's side, ``function = "pullImage"``,
is :mod:`vmbuild.builders.pull_image`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from vmbuild.errors import RegistryError, SpecError, VmbuildError
from vmbuild.oci import archive, metadata
from vmbuild.oci.compress import Compression, compressor, threads
from vmbuild.oci.digest import hex_of, of_bytes
from vmbuild.oci.image import Image, Layer
from vmbuild.oci.names import DIGEST_RE
from vmbuild.oci.output import OutputOptions, atomic_file
from vmbuild.oci.sinks import HashingWriter
from vmbuild.oci.tarstream import TarStreamWriter
from vmbuild.registry import blobs, known, pulledcache
from vmbuild.registry.auth import Credentials, load_credentials
from vmbuild.registry.client import Client
from vmbuild.registry.inflate import CachedBlob, SizeGuessWrong, count_plain
from vmbuild.registry.manifest import Manifest, Platform, resolve
from vmbuild.registry.nixhash import to_sri
from vmbuild.registry.progress import Progress
from vmbuild.registry.reference import Repository

MTIME = 1  # what Nix gives every store file; fixed, so the archive is reproducible


class PulledImage(Image):
    """An image whose config is kept as the registry's bytes."""

    raw_config: bytes = b""

    def config_bytes(self) -> bytes:
        return self.raw_config


@dataclass(frozen=True)
class Pulled:
    image: PulledImage
    manifest: Manifest
    sha256: bytes  # of the written --out file

    @property
    def sri(self) -> str:
        return to_sri(self.sha256)


def client_for(
    repo: Repository, tls_verify: bool, credentials: Credentials | None = None
) -> Client:
    """A client for ``repo``: with ``credentials``, else those the auth file has."""
    creds = credentials or load_credentials(repo.host, repo.path)
    return Client(repo.api_host, credentials=creds, tls_verify=tls_verify)


def pull(
    repo: Repository,
    reference: str,
    platform: Platform,
    name: str,
    tag: str,
    out: Path,
    opts: OutputOptions,
    *,
    tls_verify: bool = True,
    expected: bytes | None = None,
    progress: Progress | None = None,
) -> Pulled:
    """Fetch ``repo@reference`` and write it to ``out``; with ``expected``, the file must
    hash to it or nothing is kept."""
    if opts.format == "oci":
        raise SpecError(
            "pullImage writes a single file: docker-archive or oci-archive",
            "use --format docker-archive (the default) or oci-archive",
        )
    what = f"{repo}@{reference}"
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise VmbuildError(f"output directory {directory} does not exist", "create it first")
    client = client_for(repo, tls_verify)
    progress = progress or Progress("fetched")
    downloader = blobs.Downloader(client, repo, progress, what)
    try:
        manifest, _ = resolve(client, repo, reference, platform, what)
        unpack = opts.format == "docker-archive"
        raw_config = _config(downloader, manifest)
        diff_ids = _diff_ids(raw_config, manifest, what)
        if expected is not None and pulledcache.place(expected, out):
            image = _image(name, tag, raw_config, diff_ids, manifest, None, unpack, what, False)
            return Pulled(image, manifest, expected)
        # Remote registries: several streams hide latency. One on this machine: the
        # CPUs are the limit, and fewer streams get the first layer (the writer's
        # next input) sooner.
        jobs = max(2, min(4, threads())) if client.local else 4
        fetching = blobs.Fetching(downloader, list(manifest.layers), unpack, jobs=jobs)
        try:
            # The archive writer takes each layer when it gets to it, so writing the
            # first layers overlaps with downloading the others.
            # With the archive's hash pinned, the pin covers the layer tars: a match means
            # the same bytes as when the hash was first printed, and that run checked the
            # diff_ids (prefetch always does; a build does when its hash does not match).
            check = expected is None
            image = _image(name, tag, raw_config, diff_ids, manifest, fetching, unpack, what, check)
            try:
                digest = _write_checked(image, manifest, out, opts, expected, fetching)
            except HashMismatch:
                _check_layers(image)  # a bad layer is the better error; and the got hash
                raise  # printed is then of checked layers
            _record_layers(image)
            if expected is not None:
                pulledcache.remember(out, expected)
        finally:
            fetching.close()
        seen = [manifest.config.digest, *(d.digest for d in manifest.layers)]
        known.remember_seen(client.host, repo.path, seen)
    finally:
        progress.close()
        client.close()
    return Pulled(image, manifest, digest)


def _config(downloader: blobs.Downloader, manifest: Manifest) -> bytes:
    """The config's bytes, checked against the manifest (a cached copy too)."""
    for _ in range(2):
        blob = downloader.get(manifest.config, False)
        raw = blob.path.read_bytes()
        if of_bytes(raw) == manifest.config.digest:
            return raw
        blob.path.unlink(missing_ok=True)
    raise RegistryError(f"{downloader.what}: the config does not match its digest", "corrupt")


def _diff_ids(raw_config: bytes, manifest: Manifest, what: str) -> list[str]:
    try:
        config = json.loads(raw_config)
        diff_ids = config["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{what}: the image config lacks rootfs.diff_ids", "corrupt") from exc
    count = len(diff_ids) if isinstance(diff_ids, list) else 0
    if not isinstance(diff_ids, list) or count != len(manifest.layers):
        raise RegistryError(
            f"{what}: the config lists {count} diff_ids for {len(manifest.layers)} layers",
            "the image is malformed",
        )
    for d in diff_ids:
        # A diff_id names a member of the docker-archive: it must be a digest, nothing else.
        if not isinstance(d, str) or not DIGEST_RE.match(d):
            raise RegistryError(
                f"{what}: the image config has a malformed diff_id {str(d)[:100]!r}",
                "the image is malformed",
            )
    return list(diff_ids)


class HashMismatch(RegistryError):
    """The archive does not hash to the spec's hash."""


class _NullSink:
    def write(self, data: bytes) -> int:
        return len(data)


def _check_layers(image: Image) -> None:
    """Hash every layer tar not checked yet against its diff_id (and remember it)."""
    for layer in image.layers:
        if isinstance(layer.blob, _Pending):
            blob = layer.blob.resolve()
            if blob.unpack and not blob.check_diff and blob.compression != "none":
                checked = dataclasses.replace(blob, check_diff=True)
                checked.copy_to(cast(BinaryIO, _NullSink()))


def _record_layers(image: Image) -> None:
    """After a pinned hash matched: remember what the layer tars are (see pull())."""
    for layer in image.layers:
        if isinstance(layer.blob, _Pending):
            blob = layer.blob.resolve()
            if blob.unpack and blob.diff_id and blob.compression != "none":
                known.remember_unpacked(blob.digest, blob.compression, blob.diff_id, blob.size)
                known.remember_compressed(
                    blob.diff_id, blob.compression, blob.digest, blob.stored_size
                )


class _Pending:
    """A layer blob that may still be downloading (the Blob protocol, waiting).

    With ``check``, a layer tar whose diff_id was never checked is hashed as it is
    written out; without (the spec pins the archive's hash, which covers the tars),
    it is named by the config's diff_id as it stands.
    """

    def __init__(
        self,
        fetching: blobs.Fetching | None,
        digest: str,
        diff_id: str | None,
        what: str,
        check: bool,
    ):
        self._fetching = fetching
        self._digest = digest
        self._diff_id = diff_id
        self._what = what
        self._check = check

    def _blob(self) -> CachedBlob:
        if self._fetching is None:
            raise AssertionError("the layers of a pull served from its kept archive are not read")
        # Every layer's member names are checked as it is written out (see layerscan).
        blob = dataclasses.replace(self._fetching.get(self._digest), scan=True)
        exact = self._fetching.exact_sizes.get(self._digest)
        if exact is not None:
            blob = dataclasses.replace(blob, plain_size=exact, size_exact=True)
        if self._diff_id is None:
            return blob
        if not blob.diff_id:  # not checked yet: check it while writing it out
            return dataclasses.replace(blob, diff_id=self._diff_id, check_diff=self._check)
        if blob.diff_id != self._diff_id:
            raise RegistryError(
                f"{self._what}: layer {self._digest} unpacks to {blob.diff_id}, "
                f"but the config says {self._diff_id}",
                "the image is corrupt",
            )
        return blob

    def resolve(self) -> CachedBlob:
        return self._blob()

    @property
    def size(self) -> int:
        return self._blob().size

    def copy_to(self, sink: BinaryIO) -> None:
        self._blob().copy_to(sink)


def _compression_of(media_type: str) -> Compression:
    if "zstd" in media_type:
        return "zstd"
    return "gzip" if "gzip" in media_type else "none"


def _image(
    name: str,
    tag: str,
    raw_config: bytes,
    diff_ids: list[str],
    manifest: Manifest,
    fetching: blobs.Fetching | None,
    unpack: bool,
    what: str,
    check: bool,
) -> PulledImage:
    config: dict[str, Any] = json.loads(raw_config)
    layers = []
    for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
        if unpack:
            blob = _Pending(fetching, desc.digest, diff_id, what, check)
            layers.append(Layer(diff_id, blob, "none", diff_id))
        else:
            blob = _Pending(fetching, desc.digest, None, what, check)
            kind = _compression_of(desc.media_type)
            layers.append(Layer(diff_id, blob, kind, known_digest=desc.digest))
    image = PulledImage(name, tag, config, layers)
    image.raw_config = raw_config
    return image


def _write_checked(
    image: PulledImage,
    manifest: Manifest,
    out: Path,
    opts: OutputOptions,
    expected: bytes | None,
    fetching: blobs.Fetching,
) -> bytes:
    """Write the archive; when a layer's claimed size was wrong (a gzip of several
    members), count that layer's real size and write the archive again."""
    for _ in range(len(image.layers) + 1):
        try:
            return _write(image, manifest, out, opts, expected)
        except SizeGuessWrong as wrong:
            blob = wrong.blob
            fetching.exact_sizes[blob.digest] = count_plain(blob.path, blob.compression)
    raise AssertionError("unreachable: every layer size is exact by now")


def _write(
    image: PulledImage,
    manifest: Manifest,
    out: Path,
    opts: OutputOptions,
    expected: bytes | None,
) -> bytes:
    with atomic_file(out) as f:
        hw = HashingWriter(f)
        sink = cast(BinaryIO, hw)
        try:
            if opts.format == "oci-archive":
                write_oci_archive(image, manifest, sink)
            else:
                with compressor(sink, opts.compression, opts.level) as z:
                    archive.write_docker_archive(image, z, MTIME)
            hw.flush()
        except OSError as exc:  # local I/O: disk full, permissions, a vanished file
            raise VmbuildError(
                f"writing {out} failed: {exc}", "check free space and permissions"
            ) from exc
        got = bytes.fromhex(hex_of(hw.digest))
        if expected is not None and got != expected:
            raise HashMismatch(
                f"hash mismatch for {image.ref}: got {to_sri(got)}, expected {to_sri(expected)}",
                "if the new image is what you want, put the got hash in the spec",
            )
    return got


def write_oci_archive(image: PulledImage, manifest: Manifest, sink: BinaryIO) -> None:
    """An OCI archive of the registry's own manifest, config and blobs."""
    tar = TarStreamWriter(sink, MTIME)
    tar.add_bytes("oci-layout", metadata.OCI_LAYOUT)
    written: set[str] = set()
    for layer in image.layers:
        if layer.digest not in written:
            written.add(layer.digest)
            path = f"blobs/sha256/{hex_of(layer.digest)}"
            tar.add_stream(path, layer.blob.size, layer.blob.copy_to)
    tar.add_bytes(f"blobs/sha256/{hex_of(manifest.config.digest)}", image.raw_config)
    tar.add_bytes(f"blobs/sha256/{hex_of(manifest.digest)}", manifest.raw)
    desc = metadata.descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
    tar.add_bytes("index.json", metadata.oci_index_json(desc, image.ref, image.tag, None))
    tar.close()


__all__ = ["Pulled", "PulledImage", "pull"]
