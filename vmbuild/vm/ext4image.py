"""``python -m vmbuild.vm.ext4image TAR STAGING IMAGE``: one overlay lower as ext4.

Run under ``fakeroot`` by :mod:`vmbuild.vm.lowers`. TAR is a lower in overlay form, as
:mod:`vmbuild.vm.lowers` writes it (names already checked: none absolute, none with
``..``, none below a symlink; parents before children; each hard link after its
target). It is unpacked below the new directory STAGING (removed afterwards), in
fakeroot's eyes with its owners, modes, device nodes (a whiteout is a 0:0 character
device) and xattrs (``trusted.overlay.opaque``, ``security.capability``); ``mke2fs -d``,
reading it through the same fakeroot session, writes IMAGE: an ext4 without a journal
whose ``/l`` is the lower. (Debian 12's e2fsprogs 1.47.0 cannot read a tar itself;
1.47.1 can.) Each entry gets its final metadata in one go (chown, chmod, then the
xattrs: an xattr set first makes fakeroot 1.31 forget the file's type).
Exit status 0 on success; on failure, one line on stderr.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
from pathlib import Path

from vmbuild.run import run

XATTR = "SCHILY.xattr."
BLOCK = 4096
INODE = 256


def _xattrs(path: str, info: tarfile.TarInfo) -> None:
    for key, value in info.pax_headers.items():
        if key.startswith(XATTR):
            name = key[len(XATTR) :]
            os.setxattr(path, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)


def _place(root: str, name: str) -> str:
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(f"unsafe name {name!r}")
    parent = os.path.join(root, *parts[:-1])
    if not stat.S_ISDIR(os.lstat(parent).st_mode):
        raise ValueError(f"{name!r} is not below a directory")
    return os.path.join(root, *parts)


def unpack(tar: tarfile.TarFile, root: str) -> tuple[int, int]:
    """Unpack ``tar`` below ``root``; the (blocks, inodes) the image needs for it."""
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    blocks = inodes = 0
    for info in tar:
        name = info.name.rstrip("/")
        if name in ("", "."):
            dirs.append((root, info))
            continue
        path = _place(root, name)
        inodes += 1
        blocks += 1 if info.pax_headers else 0
        if info.isdir():
            os.mkdir(path, 0o700)
            dirs.append((path, info))
            blocks += 1
            continue
        if info.islnk():
            os.link(_place(root, info.linkname.rstrip("/")), path)
            continue
        if info.isreg():
            src = tar.extractfile(info)
            assert src is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            blocks += (info.size + BLOCK - 1) // BLOCK + 1
        elif info.issym():
            os.symlink(info.linkname, path)
            blocks += 1
        elif info.ischr() or info.isblk():
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(info.devmajor, info.devminor))
        elif info.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise ValueError(f"{name!r} has an unknown type")
        os.chown(path, info.uid, info.gid, follow_symlinks=False)
        if not info.issym():
            os.chmod(path, info.mode & 0o7777)
        _xattrs(path, info)
        os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)
    for path, info in reversed(dirs):  # children first: a parent may become read-only
        os.chown(path, info.uid, info.gid)
        os.chmod(path, info.mode & 0o7777)
        _xattrs(path, info)
        os.utime(path, (info.mtime, info.mtime))
    return blocks, inodes


def make_image(staging: str, image: str, blocks: int, inodes: int) -> None:
    inodes += 64
    blocks += blocks // 8 + inodes * INODE // BLOCK + 2048  # metadata, bitmaps, slack
    with open(image, "wb") as f:
        f.truncate(blocks * BLOCK)
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs is None:
        raise ValueError("mkfs.ext4 is missing (apt-get install e2fsprogs)")
    argv = [
        mkfs, "-q", "-F", "-b", str(BLOCK), "-I", str(INODE), "-N", str(inodes), "-m", "0",
        "-O", "^has_journal,^resize_inode", "-L", "vmbuild-lower",
        "-E", "root_owner=0:0,nodiscard", "-d", staging, image,
    ]  # fmt: skip
    done = run(argv, capture=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-2:]
        raise ValueError("mke2fs failed: " + " / ".join(tail))


def _writable(top: str) -> None:
    for dirpath, dirnames, _ in os.walk(top):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o700)


def main(argv: list[str]) -> int:
    tar_path, staging, image = argv
    root = os.path.join(staging, "l")
    try:
        os.makedirs(root)
        with tarfile.open(tar_path, "r:") as tar:
            blocks, inodes = unpack(tar, root)
        make_image(staging, image, blocks, inodes)
    except (OSError, ValueError, tarfile.TarError, EOFError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    finally:
        if os.path.isdir(staging):
            os.chmod(staging, 0o700)
            _writable(staging)
            shutil.rmtree(staging, ignore_errors=True)
    Path(image).chmod(0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
