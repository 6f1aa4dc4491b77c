"""prefetch: what nix-prefetch-docker does, for a pullImage spec.

The tag is resolved to the digest of the platform's own image manifest (not of a
manifest list, which may change when other platforms are rebuilt: nixpkgs #283098);
the image is pulled exactly as pullImage would write it, and its hash printed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from vmbuild import tempdirs
from vmbuild.oci.names import check_name
from vmbuild.oci.output import OutputOptions
from vmbuild.registry.manifest import Platform, resolve
from vmbuild.registry.progress import Progress
from vmbuild.registry.pull import client_for, pull
from vmbuild.registry.reference import check_tag, parse_repository


@dataclass(frozen=True)
class Prefetched:
    image_name: str
    image_digest: str
    final_image_name: str
    final_image_tag: str
    hash: str
    platform: Platform
    os_given: bool
    arch_given: bool
    format: str = "docker-archive"
    path: Path | None = None
    tls_verify: bool = True

    def toml(self) -> str:
        """A whole pullImage spec: ``vmbuild build`` reads it as it is."""
        lines = [
            'function = "pullImage"',
            f'imageName = "{self.image_name}"',
            f'imageDigest = "{self.image_digest}"',
            f'hash = "{self.hash}"',
            f'finalImageName = "{self.final_image_name}"',
            f'finalImageTag = "{self.final_image_tag}"',
        ]
        if self.os_given:
            lines.append(f'os = "{self.platform.os}"')
        if self.arch_given:
            lines.append(f'arch = "{str(self.platform).split("/", 1)[1]}"')
        if not self.tls_verify:
            lines.append("tlsVerify = false")
        if self.format != "docker-archive":
            lines.insert(
                0, f"# the hash is of the {self.format} (build with --format {self.format})"
            )
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {
            "imageName": self.image_name,
            "imageDigest": self.image_digest,
            "hash": self.hash,
            "finalImageName": self.final_image_name,
            "finalImageTag": self.final_image_tag,
            "platform": str(self.platform),
            "format": self.format,
            "path": str(self.path) if self.path else None,
        }

    def summary(self) -> str:
        return (
            f"-> ImageName: {self.image_name}\n"
            f"-> ImageDigest: {self.image_digest}\n"
            f"-> FinalImageName: {self.final_image_name}\n"
            f"-> FinalImageTag: {self.final_image_tag}\n"
            f"-> Platform: {self.platform}\n"
            + (f"-> ImagePath: {self.path}\n" if self.path else "")
            + f"-> ImageHash: {self.hash}\n"
        )


def prefetch(
    image_name: str,
    image_tag: str,
    platform: Platform,
    *,
    final_image_name: str | None = None,
    final_image_tag: str | None = None,
    opts: OutputOptions | None = None,
    tls_verify: bool = True,
    keep: Path | None = None,
    os_given: bool = False,
    arch_given: bool = False,
    progress: Progress | None = None,
) -> Prefetched:
    repo = parse_repository(image_name, "--image-name")
    check_tag(image_tag, "--image-tag")
    final_name = check_name(final_image_name or image_name, "--final-image-name")
    final_tag = check_tag(final_image_tag or image_tag, "--final-image-tag")
    opts = opts or OutputOptions(compression="none")
    client = client_for(repo, tls_verify)
    try:
        manifest, _ = resolve(client, repo, image_tag, platform, f"{repo}:{image_tag}")
    finally:
        client.close()
    with tempdirs.workdir("vmbuild-prefetch-") as work:
        out = keep or Path(work) / "image.tar"
        pulled = pull(
            repo,
            manifest.digest,
            platform,
            final_name,
            final_tag,
            out,
            opts,
            tls_verify=tls_verify,
            progress=progress,
        )
    return Prefetched(
        image_name,
        manifest.digest,
        final_name,
        final_tag,
        pulled.sri,
        platform,
        os_given,
        arch_given,
        opts.format,
        keep,
        tls_verify,
    )


def report(result: Prefetched, out: TextIO | None = None, err: TextIO | None = None) -> None:
    (err or sys.stderr).write(result.summary())
    (out or sys.stdout).write(result.toml())
