"""A small signed apt repository made by the tests and served on 127.0.0.1.

Packages are built with ``dpkg-deb --build`` (or, for hostile ones, written member by
member); ``Packages``, ``Release`` and an ``InRelease`` clear-signed with a throwaway
gpg key are written by hand, as the archive's formats say.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SUITE = "testing"
ARCH = "amd64"


@dataclass
class Pkg:
    name: str
    version: str = "1.0"
    arch: str = ARCH
    fields: dict[str, str] = field(default_factory=dict)  # Depends, Provides, ...
    files: dict[str, bytes] = field(default_factory=dict)  # path -> content
    symlinks: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)  # preinst, postinst, ... -> text


def build_deb(pkg: Pkg, out_dir: Path) -> Path:
    root = out_dir / f"root-{pkg.name}-{pkg.version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [
        f"Package: {pkg.name}",
        f"Version: {pkg.version}",
        f"Architecture: {pkg.arch}",
        "Maintainer: Test <test@invalid>",
        f"Description: test package {pkg.name}",
        *(f"{k}: {v}" for k, v in pkg.fields.items()),
    ]
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for script, text in pkg.scripts.items():
        (root / "DEBIAN" / script).write_text(text)
        (root / "DEBIAN" / script).chmod(0o755)
    for path, data in pkg.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if path.split("/")[-2:-1] == ["bin"] else 0o644)
    for path, dest in pkg.symlinks.items():
        link = root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(dest, link)
    deb = out_dir / f"{pkg.name}_{pkg.version}_{pkg.arch}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isfile() else None)
    return buf.getvalue()


def crafted_deb(
    name: str,
    members: list[tuple[tarfile.TarInfo, bytes]],
    out_dir: Path,
    *,
    control: str = "",
    scripts: dict[str, str] | None = None,
) -> Path:
    """A .deb written member by member: its data holds ``members`` as given (any name,
    type or owner); its control file is ``control`` (default: ``Package: NAME``...),
    with ``scripts`` (postinst, ...) beside it. Named ``NAME_1.0_amd64.deb``."""
    text = control or f"Package: {name}\nVersion: 1.0\nArchitecture: {ARCH}\nDescription: x\n"
    cti = tarfile.TarInfo("./control")
    cti.size = len(text.encode())
    controls = [(cti, text.encode())]
    for script, body in (scripts or {}).items():
        sti = tarfile.TarInfo(f"./{script}")
        sti.size, sti.mode = len(body.encode()), 0o755
        controls.append((sti, body.encode()))
    parts = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", _tar_gz(controls)),
        ("data.tar.gz", _tar_gz(members)),
    ]
    out = bytearray(b"!<arch>\n")
    for arname, data in parts:
        header = f"{arname:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    deb = out_dir / f"{name}_1.0_{ARCH}.deb"
    deb.write_bytes(bytes(out))
    return deb


def member(
    name: str, *, link: str = "", kind: bytes = b"", data: bytes = b"x\n"
) -> tuple[tarfile.TarInfo, bytes]:
    """One data member for :func:`crafted_deb`: a file holding ``data``, a symlink to
    ``link``, or a member of tarfile type ``kind`` (a directory, a character device 0:0)."""
    ti = tarfile.TarInfo(name)
    if link:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    elif kind:
        ti.type = kind
    else:
        ti.size = len(data)
    return ti, data


def hostile_deb(name: str, path: str, out_dir: Path, *, link: str = "") -> Path:
    """A .deb whose data holds ``path`` (``../x``, ``/x``) or a symlink to ``link``."""
    return crafted_deb(name, [member(path, link=link)], out_dir)


class Keys:
    """A throwaway signing key in its own GNUPGHOME; ``keyring`` is its public key."""

    def __init__(self, home: Path, uid: str = "vmbuild test <test@invalid>"):
        home.mkdir(mode=0o700, parents=True)
        self.home = home
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        self._gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        self.keyring = home / "keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export").stdout)

    def _gpg(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
            env=self.env,
            input=input,
            capture_output=True,
            check=True,
        )

    def clearsign(self, text: bytes) -> bytes:
        return self._gpg("--clearsign", "--digest-algo", "SHA256", input=text).stdout


def _paragraph(deb: Path, pool_path: str, name: str | None) -> str:
    control = subprocess.run(
        ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
    ).stdout
    if name is not None:  # indexed under another name than its control file says
        control = re.sub(r"(?m)^Package: .*$", f"Package: {name}", control, count=1)
    data = deb.read_bytes()
    return (
        control.rstrip("\n")
        + f"\nFilename: {pool_path}\nSize: {len(data)}\n"
        + f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def write_repo(
    root: Path, debs: list[Path], keys: Keys, index_as: dict[str, str] | None = None
) -> None:
    """``pool/`` with ``debs``, and ``dists/SUITE`` indexed and signed by ``keys``; a .deb
    whose file name is in ``index_as`` is indexed under the package name given there
    (whatever its control file says)."""
    pool = root / "pool" / "main"
    pool.mkdir(parents=True, exist_ok=True)
    paras = []
    for deb in sorted(debs):
        target = pool / deb.name
        target.write_bytes(deb.read_bytes())
        paras.append(_paragraph(target, f"pool/main/{deb.name}", (index_as or {}).get(deb.name)))
    text = "\n".join(paras).encode()
    bindir = root / "dists" / SUITE / "main" / f"binary-{ARCH}"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "Packages").write_bytes(text)
    (bindir / "Packages.gz").write_bytes(gzip.compress(text, mtime=0))
    sums = []
    for name in ("Packages", "Packages.gz"):
        data = (bindir / name).read_bytes()
        sums.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-{ARCH}/{name}")
    release = (
        f"Origin: vmbuild-test\nSuite: {SUITE}\nCodename: {SUITE}\n"
        f"Date: Tue, 01 Dec 2026 00:00:00 UTC\nArchitectures: {ARCH}\nComponents: main\n"
        "SHA256:\n" + "\n".join(sums) + "\n"
    ).encode()
    dist = root / "dists" / SUITE
    (dist / "Release").write_bytes(release)
    (dist / "InRelease").write_bytes(keys.clearsign(release))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """An HTTP server for ``root`` on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def host_debs(names: list[str], out_dir: Path) -> list[Path]:
    """The .deb files, from the host's configured mirror (through vmbuild's cache), of
    ``names`` with dpkg and the Essential set, resolved as configure = true resolves
    them: what a local repository needs for a configure = true build of ``names``."""
    from vmbuild.debian.fetch import deb_path, fetch_all
    from vmbuild.debian.lock import Request
    from vmbuild.debian.packages import make_lock, settings

    s = settings(goarch=ARCH, lock=out_dir / "host.lock", essential=True)
    lock = make_lock(s, [Request(n) for n in [*names, "dpkg"]])
    fetch_all(s.mirror, lock.packages)
    return [deb_path(p) for p in lock.packages]
