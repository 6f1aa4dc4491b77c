"""One overlay lower (a tar in overlay form) as an ext4 image, made without root.

The members come as :mod:`vmbuild.vm.lowers` writes a lower's tar (``write_entries``,
into a :class:`Stager` instead of a tar): names already checked (none absolute, none
with ``..``, none below a symlink), parents before children, each hard link after its
target. Directories, regular files, symlinks and hard links are
unpacked below a private staging directory (mode 0700) with the invoking user's owner,
directories 0700, files with the layer's permission bits plus u+r (never setuid, setgid
or sticky; nothing of the layer's owners, devices or xattrs touches the host); ``mke2fs
-d`` copies the staging tree (owners, modes, times) into a new ext4 (no journal) whose
``/l`` is the lower; and one ``debugfs -w`` session then sets each owner and mode that
differs from the staged one (a layer's files owned by the building user, or all of them
when root builds, need none), makes the device nodes and FIFOs (a whiteout is a 0:0
character device) and sets the xattrs
(``trusted.overlay.opaque``, ``security.capability``, ...). Debian 12's e2fsprogs 1.47.0
cannot read a tar itself (1.47.1 can), and fakeroot costs a round trip to its daemon per
call: 60 s for a Debian base on a busy host, against a few seconds this way.
A name debugfs cannot be given (one with a newline) is refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from vmbuild.run import run, which

XATTR = "SCHILY.xattr."
EXT4_BLOCK = 4096
INODE = 256
TOP = "l"  # the lower's root inside the image
DIR_MODE = stat.S_IFDIR | 0o700  # a staged directory's (it must stay ours to fill)


class Unconvertible(Exception):
    """The lower cannot be made into an image; the message says why (one line)."""


def _quote(name: str) -> str:
    """``name`` as one debugfs argument: in double quotes, a quote doubled."""
    if "\n" in name or "\r" in name:
        raise Unconvertible(f"{name!r}: a name with a line break is not supported")
    return '"' + name.replace('"', '""') + '"'


@dataclass
class DebugfsScript:
    """What the image needs: its size, and the debugfs commands that finish it."""

    blocks: int = 0
    inodes: int = 0
    commands: list[str] = field(default_factory=list)
    values: int = 0  # xattr values written to files for ``ea_set -f``


def _check(root: str, name: str) -> str:
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise Unconvertible(f"{name!r} is not a safe name")
    parent = os.path.join(root, *parts[:-1])
    if not stat.S_ISDIR(os.lstat(parent).st_mode):
        raise Unconvertible(f"{name!r} is not below a directory")
    return os.path.join(root, *parts)


@dataclass(frozen=True)
class Staged:
    """What ``mke2fs -d`` copies from a staged entry: its owner, and its mode (None: a
    node debugfs makes, with nothing staged). debugfs sets only what differs."""

    uid: int
    gid: int
    mode: int | None = None


def _meta(
    plan: DebugfsScript,
    target: str,
    info: tarfile.TarInfo,
    kind: int,
    values: Path,
    staged: Staged | None = None,
) -> None:
    q = _quote(target)
    if staged is None or info.uid != staged.uid:
        plan.commands.append(f"sif {q} uid {info.uid}")
    if staged is None or info.gid != staged.gid:
        plan.commands.append(f"sif {q} gid {info.gid}")
    mode = kind | (info.mode & 0o7777)
    if kind != stat.S_IFLNK and (staged is None or staged.mode != mode):
        plan.commands.append(f"sif {q} mode 0{mode:o}")
    for key, value in sorted(info.pax_headers.items()):
        if key.startswith(XATTR):
            path = values / str(plan.values)
            plan.values += 1
            path.write_bytes(value.encode("utf-8", "surrogateescape"))
            plan.commands.append(f"ea_set -f {_quote(str(path))} {q} {_quote(key[len(XATTR) :])}")
            plan.blocks += 1


class Stager:
    """Takes a lower's members (``addfile`` as on a tar being written, in the order
    ``retar.write_entries`` gives them) and stages them below ``root`` (``/l``)."""

    def __init__(self, root: str, values: Path):
        self.root = root
        self.values = values
        self.plan = DebugfsScript()
        self._dirs: list[tuple[str, int]] = []
        self._top = tarfile.TarInfo(".")
        self._top.mode = 0o755
        top = os.stat(root)  # the staged entries' owner (they are made in it, by us)
        self._owner = Staged(top.st_uid, top.st_gid)

    def addfile(self, info: tarfile.TarInfo, fileobj: BinaryIO | None = None) -> None:
        plan, values = self.plan, self.values
        name = info.name.rstrip("/")
        if name in ("", "."):
            self._top = info
            return
        path = _check(self.root, name)
        target = f"/{TOP}/{name}"
        plan.inodes += 1
        owner = self._owner
        if info.isdir():
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # whatever the umask: the mode mke2fs copies
            self._dirs.append((path, int(info.mtime)))
            plan.blocks += 1
            _meta(plan, target, info, stat.S_IFDIR, values, Staged(owner.uid, owner.gid, DIR_MODE))
        elif info.islnk():
            os.link(_check(self.root, info.linkname.rstrip("/")), path)
        elif info.isreg():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            # the permission bits as the layer has them (in a directory only we can
            # enter) and readable by us for mke2fs, never setuid, setgid or sticky: what
            # differs from the layer's mode debugfs sets in the image
            perms = info.mode & 0o777 | 0o400
            os.fchmod(fd, perms)
            with os.fdopen(fd, "wb") as f:
                if fileobj is not None:
                    shutil.copyfileobj(fileobj, f, 1 << 20)
            os.utime(path, (info.mtime, info.mtime))
            plan.blocks += (info.size + EXT4_BLOCK - 1) // EXT4_BLOCK + 1
            staged = Staged(owner.uid, owner.gid, stat.S_IFREG | perms)
            _meta(plan, target, info, stat.S_IFREG, values, staged)
        elif info.issym():
            os.symlink(info.linkname, path)
            os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)
            plan.blocks += 1
            _meta(plan, target, info, stat.S_IFLNK, values, owner)
        elif info.ischr() or info.isblk() or info.isfifo():
            parent, base = os.path.split(target)
            kind = "p" if info.isfifo() else ("c" if info.ischr() else "b")
            numbers = "" if info.isfifo() else f" {info.devmajor} {info.devminor}"
            # debugfs makes a node in its current directory, named as given
            plan.commands += [f"cd {_quote(parent)}", f"mknod {_quote(base)} {kind}{numbers}"]
            plan.commands.append("cd /")
            mode = {"p": stat.S_IFIFO, "c": stat.S_IFCHR, "b": stat.S_IFBLK}[kind]
            _meta(plan, target, info, mode, values)
        else:
            raise Unconvertible(f"{name!r} has an unknown type")

    def finish(self) -> DebugfsScript:
        for path, mtime in reversed(self._dirs):  # children first: a child sets the mtime
            os.utime(path, (mtime, mtime))
        _meta(self.plan, f"/{TOP}", self._top, stat.S_IFDIR, self.values)
        return self.plan


def make_image(staging: Path, image: Path, plan: DebugfsScript, work: Path) -> None:
    """``mke2fs -d staging`` into ``image`` (sized for ``plan``), then ``plan``'s commands."""
    inodes = plan.inodes + 64
    blocks = plan.blocks + plan.blocks // 8 + inodes * INODE // EXT4_BLOCK + 2048
    with open(image, "wb") as f:
        f.truncate(blocks * EXT4_BLOCK)
    mkfs = which("mkfs.ext4", "e2fsprogs")
    made = run(
        [mkfs, "-q", "-F", "-b", str(EXT4_BLOCK), "-I", str(INODE), "-N", str(inodes), "-m", "0",
         "-O", "^has_journal,^resize_inode", "-L", "vmbuild-lower",
         "-E", "root_owner=0:0,nodiscard", "-d", staging, image],
        capture=True,
        check=False,
    )  # fmt: skip
    if made.returncode != 0:
        tail = made.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise Unconvertible("mke2fs failed: " + " / ".join(tail))
    script = work / "debugfs.cmds"
    script.write_text("\n".join(plan.commands) + "\n")
    debugfs = which("debugfs", "e2fsprogs")
    done = run([debugfs, "-w", "-f", script, image], capture=True, check=False)
    # debugfs exits 0 whatever a command did: its complaints are the lines that are not
    # the echo of a command or a note of an allocated inode
    noise = ("debugfs", "Allocated inode:")
    complaints = [
        ln
        for ln in (done.stdout + done.stderr).decode(errors="replace").splitlines()
        if ln.strip() and not ln.startswith(noise)
    ]
    if done.returncode != 0 or complaints:
        raise Unconvertible("debugfs failed: " + " / ".join(complaints[:2]))


def convert(write: Callable[[Stager], None], image: Path, work: Path) -> None:
    """What ``write`` gives a :class:`Stager` as the ext4 ``image``; ``work`` holds the
    staging tree (removed afterwards)."""
    staging = work / "lower-staging"
    values = work / "lower-xattrs"
    try:
        (staging / TOP).mkdir(parents=True)
        values.mkdir()
        stager = Stager(str(staging / TOP), values)
        write(stager)
        make_image(staging, image, stager.finish(), work)
    except OSError as exc:
        raise Unconvertible(str(exc)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(values, ignore_errors=True)
