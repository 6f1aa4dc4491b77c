"""A multi-layer base image with every kind of entry a lower can hold, and a runAsRoot
script that reads and changes them; the new layer's diff_id before the lowers became
filesystem images (measured with the guest unpacking tar lowers) is ``EXPECTED``."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.support.images import image_from_layers

# security.capability v2: cap_net_raw+ep
CAP = bytes.fromhex("0000000200200000000000000000000000000000")
CAP_PAX = CAP.decode("utf-8", "surrogateescape")

# (name, type, payload, attributes)
Member = tuple[str, bytes, str, dict[str, object]]


def member_tar(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, type_, payload, attrs in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime, ti.mode = type_, 100, 0o644
            if type_ == tarfile.DIRTYPE:
                ti.mode = 0o755
            elif type_ == tarfile.SYMTYPE:
                ti.mode = 0o777
            for key, value in attrs.items():
                setattr(ti, key, value)
            if type_ == tarfile.REGTYPE:
                data = payload.encode()
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                ti.linkname = payload if type_ in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
                tar.addfile(ti)
    return path


D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
C, B, P = tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE
NONE: dict[str, object] = {}

LAYERS: list[list[Member]] = [
    [
        ("bin", D, "", NONE),
        ("bin/sh-like", F, "#!/bin/true\n", {"mode": 0o755}),
        (
            "bin/ping",
            F,
            "ping\n",
            {"mode": 0o4755, "pax_headers": {"SCHILY.xattr.security.capability": CAP_PAX}},
        ),
        ("etc", D, "", NONE),
        ("etc/passwd", F, "root:x:0:0:root:/root:/bin/sh\n", NONE),
        ("etc/gone", F, "gone\n", NONE),
        ("etc/keep", F, "kept\n", {"uid": 7, "gid": 8, "mode": 0o600}),
        ("opt", D, "", NONE),
        ("opt/old", D, "", NONE),
        ("opt/old/f", F, "old\n", NONE),
        ("srv", D, "", {"mode": 0o750, "uid": 33, "gid": 33}),
        ("srv/a", F, "shared\n", NONE),
        ("srv/b", H, "srv/a", NONE),
        ("nodes", D, "", NONE),
        ("nodes/null", C, "", {"devmajor": 1, "devminor": 3, "mode": 0o666}),
        ("nodes/sda", B, "", {"devmajor": 8, "devminor": 0, "mode": 0o660, "gid": 6}),
        ("nodes/fifo", P, "", NONE),
        ("lib", L, "usr/lib", NONE),
        ("usr", D, "", NONE),
        ("usr/lib", D, "", NONE),
        ("usr/lib/libx.so.1", F, "x1\n", NONE),
    ],
    [
        ("etc", D, "", NONE),
        ("etc/.wh.gone", F, "", NONE),
        ("opt", D, "", NONE),
        ("opt/.wh..wh..opq", F, "", NONE),
        ("opt/fresh", F, "fresh\n", NONE),
        ("usr", D, "", NONE),
        ("usr/lib", D, "", NONE),
        ("usr/lib/libx.so.2", F, "x2\n", NONE),
        ("usr/lib/.wh.libx.so.1", F, "", NONE),
        ("var", D, "", {"mode": 0o1777}),
        ("var/log", D, "", {"uid": 4, "gid": 4}),
    ],
    [
        ("var", D, "", {"mode": 0o1777}),
        ("var/.wh.log", F, "", NONE),
        ("var/cache", D, "", NONE),
        ("var/cache/c", F, "cache\n", {"uid": 1000, "gid": 1000}),
        ("srv", D, "", {"mode": 0o750, "uid": 33, "gid": 33}),
        ("srv/d", F, "d\n", NONE),
        ("srv/c", H, "srv/d", NONE),
    ],
]

SCRIPT = """
test ! -e /etc/gone && test ! -e /opt/old && test -e /opt/fresh && test ! -e /var/log
test -c /nodes/null && test -b /nodes/sda && test -p /nodes/fifo
test "$(cat /srv/b)" = shared && test -x /bin/ping
echo 'app:x:900:900::/home/app:/bin/sh' >> /etc/passwd
mkdir -p /home/app /data && chown 900:900 /home/app /data
echo more >> /etc/keep
chmod 4711 /bin/ping
echo changed > /srv/a
rm /usr/lib/libx.so.2 && echo x3 > /usr/lib/libx.so.3
rm -rf /opt && mkdir /opt && echo new > /opt/new
mknod /nodes/zero c 1 5 && chown 0:6 /nodes/sda
ln /data/hl-src /data/hl 2>/dev/null || { echo s > /data/hl-src; ln /data/hl-src /data/hl; }
"""

# The new layer's diff_id with tar lowers unpacked in the guest (vmbuild before the lowers
# became filesystem images), for this base and script, uncompressed.
EXPECTED = "sha256:366295273d33f902e21483c48775c621e7c50ce1f43cef405a7d503adce3b0a7"


def rich_base(directory: Path) -> Path:
    """The base image (docker-archive) of ``LAYERS``."""
    paths = [member_tar(directory / f"base-{n}.tar", m) for n, m in enumerate(LAYERS)]
    return image_from_layers(directory / "rich-base.tar", paths, "rich-base:1")


def spec(base: Path) -> str:
    return f'name = "on-rich"\ntag = "t"\nfromImage = "{base}"\nrunAsRoot = """{SCRIPT}"""\n'
