"""The guest's userland: an initramfs assembled from host files.

Static busybox (every applet linked, except where a real tool takes the name), bash
(runAsRoot and extraCommands are bash scripts), GNU tar, shadow's user and group tools,
PAM's pam_unix for chpasswd/passwd, and dropbear, each with its shared-library closure at
the same paths as on the host, in a merged-/usr tree. The guest's init and helpers come
from ``guest/`` (:mod:`vmbuild.resources`), and the controller's SSH keys from
:mod:`vmbuild.vm.keys`. The archive is a deterministic newc cpio, cached under the sha256
of everything that goes into it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild import cache
from vmbuild.errors import ToolMissing
from vmbuild.resources import guest_file
from vmbuild.run import run
from vmbuild.vm import cpio

if TYPE_CHECKING:
    from vmbuild.vm.keys import Keys

FORMAT = "initramfs-v1"
KIND = "initramfs"
INDEX_KIND = "initramfs-index"
DPKG_STATUS = "/var/lib/dpkg/status"
GUEST_FILES = ("init", "vmbuild-exec", "exec.sh", "pam-other")

# (host path, Debian package that provides it)
TOOLS = (
    ("/usr/bin/busybox", "busybox-static"),
    ("/usr/bin/dash", "dash"),
    ("/usr/bin/bash", "bash"),
    ("/usr/sbin/dropbear", "dropbear-bin"),
    ("/usr/bin/tar", "tar"),
    ("/usr/sbin/useradd", "passwd"),
    ("/usr/sbin/usermod", "passwd"),
    ("/usr/sbin/userdel", "passwd"),
    ("/usr/sbin/groupadd", "passwd"),
    ("/usr/sbin/groupmod", "passwd"),
    ("/usr/sbin/groupdel", "passwd"),
    ("/usr/sbin/chpasswd", "passwd"),
    ("/usr/sbin/chgpasswd", "passwd"),
    ("/usr/sbin/newusers", "passwd"),
    ("/usr/bin/passwd", "passwd"),
    ("/usr/lib/x86_64-linux-gnu/security/pam_unix.so", "libpam-modules"),
    ("/usr/lib/x86_64-linux-gnu/security/pam_permit.so", "libpam-modules"),
    ("/usr/lib/x86_64-linux-gnu/security/pam_deny.so", "libpam-modules"),
)
# Shipped when the host has them.
OPTIONAL_TOOLS = (
    ("/usr/sbin/setcap", "libcap2-bin"),
    ("/usr/sbin/getcap", "libcap2-bin"),
)
HOST_DATA = (("/etc/login.defs", "login"),)
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
DIRS = (
    "dev",
    "etc",
    "etc/dropbear",
    "etc/pam.d",
    "etc/skel",
    "mnt",
    "proc",
    "root",
    "run",
    "scratch",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "usr/lib64",
    "var",
    "var/tmp",
)

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"
SHADOW = "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
GSHADOW = "root:*::\ntty:*::\nnogroup:*::\n"


@dataclass(frozen=True)
class Initramfs:
    path: Path
    digest: str


def _usr(path: str) -> str:
    """A host path as it sits in the guest's merged-/usr tree (relative)."""
    rel = path.lstrip("/")
    top, _, rest = rel.partition("/")
    return f"{MERGED_USR[top]}/{rest}" if top in MERGED_USR and rest else rel


def _host_entries() -> Iterator[cpio.Entry]:
    from vmbuild.units.helpers import default_closure as closure  # only when (re)building

    for path, package in (*TOOLS, *HOST_DATA):
        if not Path(path).exists():
            raise ToolMissing(
                f"{path} is not installed (a guest tool)", f"install it: apt-get install {package}"
            )
    tools = [Path(p) for p, _ in TOOLS]
    tools += [Path(p) for p, _ in OPTIONAL_TOOLS if Path(p).exists()]
    for host in sorted(closure(tools)):
        rel = _usr(str(host))
        st = host.lstat()
        if stat.S_ISLNK(st.st_mode):
            yield cpio.Entry.symlink(rel, str(host.readlink()))
        else:
            yield cpio.Entry.file(rel, host.read_bytes(), stat.S_IMODE(st.st_mode) & 0o755)
    for path, _ in HOST_DATA:
        yield cpio.Entry.file(_usr(path), Path(path).read_bytes())


def _busybox_links(taken: set[str]) -> Iterator[cpio.Entry]:
    listing = run(["/usr/bin/busybox", "--list-full"], capture=True, what="busybox").stdout
    for line in listing.decode().split():
        if "/" not in line:  # linuxrc
            continue
        rel = _usr("/" + line)
        name = rel.rsplit("/", 1)[1]
        if name not in taken and rel not in taken:
            yield cpio.Entry.symlink(rel, "/usr/bin/busybox")


def entries(keys: Keys) -> list[cpio.Entry]:
    """Every member of the guest's initramfs, sorted by path."""
    found: dict[str, cpio.Entry] = {}
    for d in DIRS:
        found[d] = cpio.Entry.dir(d)
    found["tmp"] = cpio.Entry.dir("tmp", 0o1777)
    found["var/tmp"] = cpio.Entry.dir("var/tmp", 0o1777)
    found["root"] = cpio.Entry.dir("root", 0o700)
    found["root/.ssh"] = cpio.Entry.dir("root/.ssh", 0o700)
    for top, target in MERGED_USR.items():
        found[top] = cpio.Entry.symlink(top, target)
    found["dev/console"] = cpio.Entry.chardev("dev/console", 5, 1)
    found["dev/null"] = cpio.Entry.chardev("dev/null", 1, 3, 0o666)
    for entry in _host_entries():
        found[entry.path] = entry
    # /bin/sh is dash, not busybox: busybox's shell runs its own applets (its tar, its
    # passwd) in preference to the real tools on PATH.
    found["usr/bin/sh"] = cpio.Entry.symlink("usr/bin/sh", "dash")
    taken = {p.rsplit("/", 1)[-1] for p, e in found.items() if p.startswith("usr/")}
    for entry in _busybox_links(taken):
        found.setdefault(entry.path, entry)
    files = {
        "init": (guest_file("init"), 0o755),
        "usr/bin/vmbuild-exec": (guest_file("vmbuild-exec"), 0o755),
        "usr/lib/vmbuild/exec.sh": (guest_file("exec.sh"), 0o644),
        "etc/pam.d/other": (guest_file("pam-other"), 0o644),
        "etc/passwd": (PASSWD.encode(), 0o644),
        "etc/group": (GROUP.encode(), 0o644),
        "etc/shadow": (SHADOW.encode(), 0o640),
        "etc/gshadow": (GSHADOW.encode(), 0o640),
        "etc/shells": (b"/bin/sh\n", 0o644),
        "etc/hostname": (b"vmbuild\n", 0o644),
        "etc/nsswitch.conf": (b"passwd: files\ngroup: files\nshadow: files\n", 0o644),
        "etc/dropbear/host_key": (keys.host_key, 0o600),
        "root/.ssh/authorized_keys": ((keys.client_pub + "\n").encode(), 0o600),
    }
    for rel, (data, perm) in files.items():
        found[rel] = cpio.Entry.file(rel, data, perm)
    for path in list(found):  # the kernel's unpacker makes no parent directories
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found[parent] = cpio.Entry.dir(parent)
            parent = parent.rpartition("/")[0]
    return [found[p] for p in sorted(found)]


def digest_of(members: list[cpio.Entry]) -> str:
    h = hashlib.sha256(FORMAT.encode())
    for e in members:
        h.update(b"%s\0%o\0%d\0" % (e.path.encode(), e.mode, len(e.data)))
        h.update(e.data)
    return h.hexdigest()


def quick_key(keys: Keys) -> str:
    """A cheap stand-in for the content digest: the tools' and dpkg's file identities.

    Computing the closure and hashing every file costs far more than these few stat
    calls. Any package change touches dpkg's status file, so the index is redone.
    """
    parts: list[str] = [FORMAT, keys.host_pub, keys.client_pub]
    for path in (*(p for p, _ in (*TOOLS, *OPTIONAL_TOOLS, *HOST_DATA)), DPKG_STATUS):
        try:
            st = os.stat(path)
            parts.append(f"{path}:{cache.file_identity(st)}")
        except OSError:
            parts.append(f"{path}:-")
    for name in GUEST_FILES:
        parts.append(guest_file(name).decode(errors="replace"))
    return cache.key(parts)


def ensure(keys: Keys) -> Initramfs:
    """The cached initramfs for the current host tools and keys, built if missing."""
    index = cache.entry(INDEX_KIND, quick_key(keys)) / "digest"
    if index.exists():
        digest = index.read_text().strip()
        final = cache.entry(KIND, digest) / "initramfs.cpio"
        if final.exists():
            return Initramfs(final, digest)
    members = entries(keys)
    digest = digest_of(members)
    final = cache.entry(KIND, digest) / "initramfs.cpio"
    if not final.exists():
        with cache.publish(KIND, digest) as tmp, (tmp / "initramfs.cpio").open("wb") as out:
            cpio.write(out, members)
    if not index.exists():
        with cache.publish(INDEX_KIND, index.parent.name) as tmp:
            (tmp / "digest").write_text(digest + "\n")
    return Initramfs(final, digest)
