"""A suite's signed ``InRelease``: fetched, its signature checked with ``gpgv`` against
the keyring, checked as apt checks it (it is the suite asked for: its ``Suite`` or
``Codename``; it has not expired: its ``Valid-Until``, unless a snapshot mirror's
``checkValidUntil = false`` says not to), and read for the hashes of its ``Packages``
indexes and its date."""

from __future__ import annotations

import email.utils
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Release

from vmbuild import run
from vmbuild.debian.http import MirrorError, get
from vmbuild.errors import StepFailed, VmbuildError

MAX_RELEASE = 16 << 20  # an InRelease (Debian's, every architecture: about 200 KB)


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


def fetch_release(
    mirror: str, suite: str, keyring: Path, check_valid_until: bool = True
) -> ReleaseInfo:
    url = f"{mirror}/dists/{suite}/InRelease"
    text = verify(get(url, MAX_RELEASE), keyring, url)
    return read_release(text, suite, url, check_valid_until)


def read_release(
    text: bytes, suite: str, url: str, check_valid_until: bool = True, now: float | None = None
) -> ReleaseInfo:
    """The verified Release ``text`` of ``suite``, checked (MirrorError when it is
    another suite's, has expired, or lists no hashes)."""
    rel = Release(text.decode("utf-8", "replace"))
    named = [str(rel[k]) for k in ("Suite", "Codename") if k in rel]
    # (as apt: a suite such as "bookworm/updates" may be named by what precedes its "/")
    if named and not {suite, suite.rpartition("/")[0] or suite} & set(named):
        raise MirrorError(
            f"{url} is the Release of {' / '.join(named)}, not of {suite}",
            "the mirror serves another suite under this name (or an old one, replayed); "
            "check the [debian] suite and mirror",
        )
    until = str(rel.get("Valid-Until", ""))
    if check_valid_until and until:
        expires = seconds_of(until)
        if expires is None:
            raise MirrorError(f"{url} has a Valid-Until {until!r} that is not a date", _STALE)
        if (time.time() if now is None else now) > expires:
            raise MirrorError(f"{url} expired on {until}", _STALE)
    files: dict[str, IndexFile] = {}
    for entry in rel.get("SHA256", []):
        try:
            files[entry["name"]] = IndexFile(entry["name"], int(entry["size"]), entry["sha256"])
        except (KeyError, ValueError):
            raise MirrorError(f"{url} has a malformed SHA256 line", _BROKEN) from None
    if not files:
        raise MirrorError(f"{url} lists no SHA256 hashes", _BROKEN)
    return ReleaseInfo(suite, str(rel.get("Date", "")), files)


_BROKEN = "the mirror's Release is not usable"
_STALE = (
    "the mirror serves an outdated suite (perhaps a replay); use a current mirror, or "
    "for a snapshot mirror set checkValidUntil = false in the [debian] table"
)


def seconds_of(date: str) -> float | None:
    """A Release's date (RFC 2822, as Date and Valid-Until are written) as seconds since
    the epoch; None when it is not one."""
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
