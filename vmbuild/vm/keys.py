"""The SSH keys between the host controller and its guests.

One pair per user, made on first use and kept in the cache (never in ``~/.ssh``):
the guest's host key in dropbear's format (made with ``dropbearkey``) with its public
half, and the controller's client key. Both are Ed25519: dropbear's own Ed25519 code is
fast even under emulation, where its ECDSA (libtommath) costs a noticeable fraction of
a second. The guest gets its host key and our public key in the initramfs; the
controller checks the guest's key on connect.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild import cache
from vmbuild.run import run, which

if TYPE_CHECKING:
    import paramiko

KIND = "ssh-keys"
VERSION = "v2"


@dataclass(frozen=True)
class Keys:
    host_key: bytes  # dropbear format private host key (goes into the guest)
    host_pub: str  # "ssh-ed25519 AAAA..." of the guest's host key
    client_key_path: Path | None  # the controller's private key (OpenSSH format)
    client_pub: str  # "ssh-ed25519 AAAA..." for the guest's authorized_keys

    def client_key(self) -> paramiko.PKey:
        """The controller's key (paramiko is imported here: while the guest boots)."""
        import paramiko

        assert self.client_key_path is not None
        return paramiko.Ed25519Key.from_private_key_file(str(self.client_key_path))

    def matches_host(self, key: paramiko.PKey) -> bool:
        """Whether ``key`` (as the guest presented it) is our guest's host key."""
        kind, blob = self.host_pub.split()[:2]
        return key.get_name() == kind and key.get_base64() == blob


def _make(into: Path) -> None:
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    dropbearkey = which("dropbearkey", "dropbear-bin")
    host = into / "host_key"
    run([dropbearkey, "-t", "ed25519", "-f", host], capture=True, what="dropbearkey")
    out = run([dropbearkey, "-y", "-f", host], capture=True, what="dropbearkey").stdout
    pub = next(line for line in out.decode().splitlines() if line.startswith("ssh-"))
    (into / "host_key.pub").write_text(" ".join(pub.split()[:2]) + "\n")
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(into / "client_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    client = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    (into / "client_key.pub").write_text(f"{client.get_name()} {client.get_base64()}\n")


def load() -> Keys:
    """The cached keys, made first if missing."""
    where = cache.entry(KIND, VERSION)
    if not (where / "client_key.pub").exists():
        with cache.publish(KIND, VERSION) as tmp:
            os.chmod(tmp, 0o700)
            _make(tmp)
    return Keys(
        host_key=(where / "host_key").read_bytes(),
        host_pub=(where / "host_key.pub").read_text().strip(),
        client_key_path=where / "client_key",
        client_pub=(where / "client_key.pub").read_text().strip(),
    )
