"""The SSH keys between the host controller and its guests.

One pair per user, made on first use and kept in the cache (never in ``~/.ssh``):
the guest's host key in dropbear's format (made with ``dropbearkey``) with its public
half, and the controller's client key (ECDSA P-256, made with paramiko). Both halves
of both pairs go into the initramfs; the controller checks the guest's key on connect.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from vmbuild import cache
from vmbuild.run import run, which

KIND = "ssh-keys"
VERSION = "v1"


@dataclass(frozen=True)
class Keys:
    host_key: bytes  # dropbear format private host key (goes into the guest)
    host_pub: str  # "ssh-ed25519 AAAA..." of the guest's host key
    client_key: paramiko.PKey  # the controller's private key
    client_pub: str  # "ecdsa-sha2-nistp256 AAAA..." for the guest's authorized_keys

    def matches_host(self, key: paramiko.PKey) -> bool:
        """Whether ``key`` (as the guest presented it) is our guest's host key."""
        kind, blob = self.host_pub.split()[:2]
        return key.get_name() == kind and key.get_base64() == blob


def _make(into: Path) -> None:
    dropbearkey = which("dropbearkey", "dropbear-bin")
    host = into / "host_key"
    run([dropbearkey, "-t", "ed25519", "-f", host], capture=True, what="dropbearkey")
    out = run([dropbearkey, "-y", "-f", host], capture=True, what="dropbearkey").stdout
    pub = next(line for line in out.decode().splitlines() if line.startswith("ssh-"))
    (into / "host_key.pub").write_text(" ".join(pub.split()[:2]) + "\n")
    client = paramiko.ECDSAKey.generate(bits=256)
    buf = io.StringIO()
    client.write_private_key(buf)
    fd = os.open(into / "client_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buf.getvalue())
    (into / "client_key.pub").write_text(f"{client.get_name()} {client.get_base64()}\n")


def load() -> Keys:
    """The cached keys, made first if missing."""
    where = cache.entry(KIND, VERSION)
    if not (where / "client_key.pub").exists():
        with cache.publish(KIND, VERSION) as tmp:
            os.chmod(tmp, 0o700)
            _make(tmp)
    client = paramiko.ECDSAKey.from_private_key_file(str(where / "client_key"))
    return Keys(
        host_key=(where / "host_key").read_bytes(),
        host_pub=(where / "host_key.pub").read_text().strip(),
        client_key=client,
        client_pub=(where / "client_key.pub").read_text().strip(),
    )
