"""What a builder hands over for its SBOM and provenance, and writing them.

A builder makes a :class:`Record` (when ``--sbom``, ``--provenance`` or the spec asks),
adds components and inputs as it builds, then, with the finished image, asks for the
referrer artifacts (OCI outputs carry them) and writes the files beside the image
(temp name + rename, as the image). Paths are checked before any work
(:func:`check_paths`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import Image, canonical_json
from vmbuild.oci.layout import ANNOTATION_CREATED
from vmbuild.oci.metadata import image_manifest
from vmbuild.oci.output import AttestOptions, OutputOptions, atomic_file, resolve_out
from vmbuild.oci.reader import BaseImage
from vmbuild.oci.referrers import Artifact
from vmbuild.sbom import provenance
from vmbuild.sbom.inventory import Component, Inventory, hash_file
from vmbuild.vm import booted


def version() -> str:
    try:
        return importlib.metadata.version("vmbuild")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def check_paths(attest: AttestOptions) -> None:
    """Refuse an unwritable --sbom or --provenance before any work."""
    for path in (attest.sbom, attest.provenance):
        if path is not None:
            resolve_out(path, directory=False)


@dataclass
class Record:
    """What one build put in, gathered as it runs."""

    opts: OutputOptions
    function: str
    build_args: dict[str, Any]
    components: list[Component] = field(default_factory=list)
    deps: list[provenance.Dependency] = field(default_factory=list)
    boots: list[tuple[Path, Path]] = field(default_factory=list)
    _sbom: tuple[str, bytes] | None = None

    @property
    def attest(self) -> AttestOptions:
        return self.opts.attest

    def add(self, *components: Component | None) -> None:
        self.components += [c for c in components if c is not None]

    def add_base(self, ref: str, base: BaseImage) -> None:
        """The base image, its packages, and its digests as an input."""
        from vmbuild.sbom import collect

        config = base.config_bytes or canonical_json(base.config)
        self.add(*collect.base_image(ref, config, base.layers, "fromImage"))
        self.depend("fromImage", of_bytes(config), ref, layers=[x.digest for x in base.layers])

    def add_debs(self, lock: Path | None) -> None:
        """The lock file the Debian packages were fetched by, as an input."""
        if lock is not None and lock.is_file():
            self.depend("lock file", "sha256:" + hash_file(lock)[0], lock.name)

    def depend(self, name: str, digest: str, uri: str | None = None, **notes: Any) -> None:
        self.deps.append(provenance.Dependency(name, digest.split(":", 1)[-1], uri, notes))

    def inventory(self, image: Image) -> Inventory:
        _, manifest = image_manifest(image)
        return Inventory(
            name=image.ref,
            version=image.tag,
            created=str(image.config.get("created") or "1970-01-01T00:00:01Z"),
            config_digest=of_bytes(image.config_bytes()),
            manifest_digest=of_bytes(manifest),
            tool=f"vmbuild-{version()}",
            components=list(self.components),
        )

    def sbom(self, image: Image) -> tuple[str, bytes]:
        """(media type, bytes) of the SBOM in the chosen format (made once)."""
        if self._sbom is None:
            self._sbom = self._render(image)
        return self._sbom

    def _render(self, image: Image) -> tuple[str, bytes]:
        inv = self.inventory(image)
        if self.attest.sbom_format == "cyclonedx":
            from vmbuild.sbom import cyclonedx

            return cyclonedx.MEDIA_TYPE, cyclonedx.render(inv)
        from vmbuild.sbom import spdx

        return spdx.MEDIA_TYPE, spdx.render(inv)

    def provenance(self, image: Image, archive: Path | None = None) -> bytes:
        _, manifest = image_manifest(image)
        subjects = [(image.ref, of_bytes(manifest)), ("config", of_bytes(image.config_bytes()))]
        if archive is not None:
            subjects.append((archive.name, "sha256:" + hash_file(archive)[0]))
        deps = list(self.deps)
        spec = self.attest.spec_file
        if spec is not None and spec.is_file():
            deps.insert(0, provenance.Dependency("spec", hash_file(spec)[0], spec.name))
        for kernel, initrd in self.boots:
            deps.append(provenance.Dependency("guest kernel", hash_file(kernel)[0], kernel.name))
            deps.append(provenance.Dependency("guest initramfs", hash_file(initrd)[0], initrd.name))
        internal = {"format": self.opts.format, "compression": self.opts.compression}
        return provenance.statement(
            subjects, self.function, self.build_args, internal, deps, version()
        )

    def referrers(self, image: Image) -> list[Artifact]:
        """The artifacts an OCI output carries (none for a docker-archive)."""
        if self.opts.format == "docker-archive":
            return []
        created = {ANNOTATION_CREATED: str(image.config.get("created", ""))}
        kind, data = self.sbom(image)
        return [
            Artifact(kind, data, created),
            Artifact(provenance.MEDIA_TYPE, self.provenance(image), created),
        ]

    def prepare(self, image: Image) -> None:
        """Render the SBOM now (before the image is put in place), so a failure leaves
        neither; only the provenance of a docker-archive waits for the archive's hash."""
        if self.attest.sbom is not None:
            self.sbom(image)

    def write(self, image: Image, out: Path) -> None:
        """Write --sbom and --provenance (each under a temporary name, then renamed)."""
        archive = out if self.opts.format == "docker-archive" and out.is_file() else None
        if self.attest.sbom is not None:
            _write(resolve_out(self.attest.sbom, directory=False), self.sbom(image)[1])
        if self.attest.provenance is not None:
            target = resolve_out(self.attest.provenance, directory=False)
            _write(target, self.provenance(image, archive))


def _write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


@contextlib.contextmanager
def recording(
    opts: OutputOptions, function: str, build_args: dict[str, Any] | None
) -> Iterator[Record | None]:
    """A :class:`Record` for the build run inside (None when nothing is asked for); the
    build VMs booted inside are noted in it."""
    if not opts.attest.wanted:
        yield None
        return
    record = Record(opts, function, dict(build_args or {}))
    with booted.recording() as boots:
        record.boots = boots
        yield record
