"""The files a root step needs in the guest, sent as one small tar over the channel.

Besides the step script and the user's scripts, it carries ``bin/``: what the guest
offers the user's script inside the image's chroot (where the guest's root is bind-mounted
read-only at ``/.vmbuild``). Busybox applets are links to the static busybox; the dynamic
tools (bash, which runs runAsRoot itself, GNU tar, shadow's user and group tools) are
wrappers that start them through the guest's own loader and libraries, so they work in
images without a shell or libc; ``shadowSetup`` is the manual's helper as a command.
Building this on the host costs the guest no forks.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import tarfile

from vmbuild.resources import guest_file, shadow_setup
from vmbuild.run import run, which

GUEST_ROOT = "/.vmbuild"
LOADER = "/lib64/ld-linux-x86-64.so.2"
DYNAMIC_TOOLS = (
    "bash",
    "tar",
    "useradd",
    "usermod",
    "userdel",
    "groupadd",
    "groupmod",
    "groupdel",
    "chpasswd",
    "chgpasswd",
    "newusers",
    "passwd",
)
SHELL = f"#!{GUEST_ROOT}/usr/bin/busybox sh\n"


@functools.cache
def applets() -> tuple[str, ...]:
    busybox = which("busybox", "busybox-static")
    out = run([busybox, "--list"], capture=True, what="busybox --list").stdout.decode()
    return tuple(sorted(a for a in out.split() if a and "/" not in a))


def wrappers() -> dict[str, str]:
    """bin/NAME -> script text for each dynamic tool the host (and so the guest) has."""
    loader = os.path.realpath(LOADER)
    libdir = os.path.dirname(loader)
    out = {}
    for tool in DYNAMIC_TOOLS:
        found = shutil.which(tool, path="/usr/sbin:/usr/bin")
        if found:
            real = os.path.realpath(found)
            out[tool] = (
                f"{SHELL}exec {GUEST_ROOT}{loader} --library-path {GUEST_ROOT}{libdir} "
                f'{GUEST_ROOT}{real} "$@"\n'
            )
    out["shadowSetup"] = SHELL + shadow_setup()
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), mode
    tar.addfile(ti, io.BytesIO(data))


def step_tar(files: dict[str, bytes]) -> bytes:
    """A tar of ``root-step``, ``files`` (by name) and ``bin/``, to unpack at /step."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        script = guest_file("root-step")
        _add(tar, "root-step", script, 0o755)
        for name, data in sorted(files.items()):
            _add(tar, name, data, 0o644)
        scripts = wrappers()
        for applet in applets():
            if applet not in scripts:
                ti = tarfile.TarInfo(f"bin/{applet}")
                ti.type, ti.linkname, ti.mode = (
                    tarfile.SYMTYPE,
                    f"{GUEST_ROOT}/usr/bin/busybox",
                    0o777,
                )
                tar.addfile(ti)
        for name, text in sorted(scripts.items()):
            _add(tar, f"bin/{name}", text.encode(), 0o755)
    return buf.getvalue()
