"""The pullImage spec: validated arguments of the manual's ``pullImage``."""

from __future__ import annotations

from dataclasses import dataclass

from vmbuild.config.common import Fields
from vmbuild.errors import SpecError
from vmbuild.oci.names import check_name, check_pinned_digest, check_tag
from vmbuild.registry.manifest import Platform, parse_platform
from vmbuild.registry.nixhash import parse_sha256, to_sri
from vmbuild.registry.reference import Repository, parse_repository


@dataclass(frozen=True)
class PullImageSpec:
    image_name: str
    repo: Repository
    image_digest: str
    final_image_name: str
    final_image_tag: str
    sha256: bytes
    platform: Platform
    tls_verify: bool = True

    @property
    def hash_sri(self) -> str:
        return to_sri(self.sha256)

    def build_args(self) -> dict[str, object]:
        return {
            "imageName": self.image_name,
            "imageDigest": self.image_digest,
            "finalImageName": self.final_image_name,
            "finalImageTag": self.final_image_tag,
            "hash": self.hash_sri,
            "os": self.platform.os,
            "arch": str(self.platform).split("/", 1)[1],
            "tlsVerify": self.tls_verify,
        }


def parse(fields: Fields) -> PullImageSpec:
    where = fields.where
    image_name = fields.required_str("imageName")
    repo = parse_repository(image_name, f"{where}: imageName")
    digest = check_pinned_digest(fields.required_str("imageDigest"), f"{where}: imageDigest")
    final_name = check_name(fields.get_str("finalImageName") or image_name, where)
    final_tag = check_tag(fields.get_str("finalImageTag") or "latest", f"{where}: finalImageTag")
    sha256, hash_ = fields.get_str("sha256"), fields.get_str("hash")
    if sha256 and hash_:
        raise SpecError(f"{where}: give sha256 or hash, not both", "keep one of them")
    if not (sha256 or hash_):
        raise SpecError(
            f"{where}: hash is required (the sha256 of the pulled image)",
            "run vmbuild prefetch --image-name NAME --image-tag TAG to get it",
        )
    key = "sha256" if sha256 else "hash"
    expected = parse_sha256(sha256 or hash_ or "", f"{where}: {key}")
    platform = parse_platform(fields.get_str("os"), fields.get_str("arch"), f"{where}: arch")
    tls_verify = fields.get_bool("tlsVerify", True)
    fields.get_str("name")  # the manual's derivation name; the output path is --out
    fields.finish()
    return PullImageSpec(
        image_name=image_name,
        repo=repo,
        image_digest=digest,
        final_image_name=final_name,
        final_image_tag=final_tag,
        sha256=expected,
        platform=platform,
        tls_verify=tls_verify,
    )
