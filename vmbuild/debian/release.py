"""A suite's signed ``InRelease``: fetched, its signature checked with ``gpgv`` against
the keyring, and read for the hashes of its ``Packages`` indexes and its date."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Release

from vmbuild import run
from vmbuild.debian.http import MirrorError, get
from vmbuild.errors import StepFailed, VmbuildError


class SignatureError(VmbuildError):
    """An index's signature does not verify against the keyring."""


@dataclass(frozen=True)
class IndexFile:
    path: str  # relative to dists/SUITE/
    size: int
    sha256: str


@dataclass(frozen=True)
class ReleaseInfo:
    suite: str
    date: str
    files: dict[str, IndexFile] = field(default_factory=dict)


def verify(signed: bytes, keyring: Path, url: str) -> bytes:
    """The text ``signed`` vouches for, once ``gpgv`` accepts its signature."""
    if not keyring.is_file():
        raise SignatureError(
            f"keyring {keyring} does not exist",
            "install debian-archive-keyring or set keyring in the [debian] table",
        )
    gpgv = run.which("gpgv", "gpgv")
    with tempfile.TemporaryDirectory(prefix="vmbuild-gpgv-") as tmp:
        signed_path = Path(tmp) / "InRelease"
        signed_path.write_bytes(signed)
        out = Path(tmp) / "out"
        try:
            run.run(
                [gpgv, "--quiet", "--keyring", keyring, "--output", out, signed_path],
                capture=True,
                what="gpgv",
                env={"LANG": "C", "PATH": "/usr/bin:/bin", "GNUPGHOME": tmp},
            )
        except StepFailed as exc:
            lines = [ln.removeprefix("gpgv:").strip() for ln in exc.output.splitlines()]
            why = lines[-1] if lines else "gpgv failed"
            raise SignatureError(
                f"{url}: the signature does not verify against {keyring} ({why})",
                "the mirror serves an index not signed by a trusted key; check the keyring",
            ) from exc
        return out.read_bytes()


def fetch_release(mirror: str, suite: str, keyring: Path) -> ReleaseInfo:
    url = f"{mirror}/dists/{suite}/InRelease"
    text = verify(get(url), keyring, url)
    rel = Release(text.decode("utf-8", "replace"))
    files: dict[str, IndexFile] = {}
    for entry in rel.get("SHA256", []):
        files[entry["name"]] = IndexFile(entry["name"], int(entry["size"]), entry["sha256"])
    if not files:
        raise MirrorError(f"{url} lists no SHA256 hashes", "the mirror's Release is not usable")
    return ReleaseInfo(suite, str(rel.get("Date", "")), files)
