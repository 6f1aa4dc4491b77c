"""sha256 hashes as Nix writes them: nix-base32 (52 chars), SRI (``sha256-<base64>``),
hex, or ``sha256:`` followed by either."""

from __future__ import annotations

import base64
import binascii

from vmbuild.errors import SpecError

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # no e, o, u, t
SIZE = 32
BASE32_LEN = (SIZE * 8 - 1) // 5 + 1  # 52


def to_base32(digest: bytes) -> str:
    """Nix's base32: the little-endian integer of the bytes, most significant digit first."""
    n = int.from_bytes(digest, "little")
    length = (len(digest) * 8 - 1) // 5 + 1
    return "".join(ALPHABET[(n >> (5 * k)) & 31] for k in range(length - 1, -1, -1))


def from_base32(text: str) -> bytes:
    n = 0
    for ch in text:
        pos = ALPHABET.find(ch)
        if pos < 0:
            raise ValueError(f"{ch!r} is not a nix-base32 digit")
        n = (n << 5) | pos
    if n >> (SIZE * 8):
        raise ValueError("too large for sha256")
    return n.to_bytes(SIZE, "little")


def to_sri(digest: bytes) -> str:
    return "sha256-" + base64.b64encode(digest).decode()


def parse_sha256(text: str, where: str) -> bytes:
    """The 32 bytes of a sha256 given in any of Nix's spellings."""
    body = text.strip()
    try:
        if body.startswith("sha256-"):
            raw = base64.b64decode(body[7:], validate=True)
        else:
            body = body.removeprefix("sha256:")
            if len(body) == BASE32_LEN:
                raw = from_base32(body)
            elif len(body) == 2 * SIZE:
                raw = bytes.fromhex(body)
            else:
                raise ValueError(f"{len(body)} characters")
        if len(raw) != SIZE:
            raise ValueError(f"{len(raw)} bytes")
    except (ValueError, binascii.Error) as exc:
        raise SpecError(
            f"{where} {text!r} is not a sha256 hash ({exc})",
            'give SRI "sha256-<base64>" or 52 nix-base32 characters (vmbuild prefetch prints it)',
        ) from exc
    return raw
