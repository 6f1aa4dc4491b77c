"""Reading a ``.deb`` on the host without unpacking it under its own names.

A ``.deb`` is an ``ar`` archive of ``debian-binary``, ``control.tar.*`` and
``data.tar.*`` (gz, xz, zst or none). Both tars are read as streams. The data's
members are checked (no absolute name, no ``..``, no hard link to a name not met
before, no relative symlink climbing out of the root) and mapped to merged-/usr
(``bin/x`` -> ``usr/bin/x``). What is read goes into one file in the cache (one file,
not a directory of them: creating inodes is a large part of a cold build's CPU):
the regular files' bytes, then the control files', then dpkg's ``.list`` of the
package, then a JSON record of every member's metadata and where its bytes are (and
the dpkg facts :mod:`vmbuild.debian.dpkgdb` derives from the control files), then a
fixed-size trailer saying where that record starts and the SHA256 of everything before
it. The layer writer reads those ranges (:class:`vmbuild.oci.tree.BlobSource`); a build
uses an entry only once its bytes hash to its trailer's hash (:func:`is_current`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import gzip
import io
import json
import lzma
import os
import posixpath
import shutil
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

import zstandard
from debian.deb822 import Deb822
from isal import isal_zlib

from vmbuild import run
from vmbuild.cache import FileMemo, file_identity
from vmbuild.debian import dpkgdb
from vmbuild.debian.lock import ARCH, NAME
from vmbuild.errors import ImageError
from vmbuild.oci import tarread
from vmbuild.oci.safety import CONTROL_CHARS

MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32")
CONTROL_FILES = (
    "control",
    "md5sums",
    "conffiles",
    "preinst",
    "postinst",
    "prerm",
    "postrm",
    "triggers",
    "shlibs",
    "symbols",
    "templates",
    "config",
)
FORMAT = "5"  # change when the unpacked layout changes (it is in the entry's name)
# The payload starts with this line, so no member's bytes are at offset 0 (a range at
# offset 0 is read as a whole file by :func:`vmbuild.oci.inputs.open_range`).
PAYLOAD_HEAD = b"vmbuild .deb payload\n"
# then the record's offset in 16 hex digits, " ", the CRC-32 (8 hex digits) of every
# byte before the trailer, "\n". A check for damage, not forgery (whoever can write the
# entry can write its trailer): CRC-32 finds any flipped byte or burst as SHA256 would,
# and costs an eighth of its CPU (ISA-L), over every byte of every package read.
TRAILER = b"\nvmbuild-meta "
TRAILER_SIZE = len(TRAILER) + 16 + 1 + 8 + 1
XZ_LARGE = 256 << 10  # a data.tar.xz this large is decompressed by an xz process
PIPE_SIZE = 1 << 20  # of the pipe from xz, and the buffer it is read through


# what reading a corrupt .deb raises (besides OSError without an errno: gzip's)
_BROKEN = (
    tarread.TarError,
    EOFError,
    zstandard.ZstdError,
    lzma.LZMAError,
    zlib.error,
    ValueError,
)


class DebError(ImageError):
    """A ``.deb`` is malformed or holds unsafe member names."""


class Identity(NamedTuple):
    """What the signed index (or the lock made from it) says a ``.deb`` is, and the
    mirror it came from: its control file must say the same (:func:`check_control`)."""

    name: str
    version: str
    architecture: str
    mirror: str


def check_control(text: str, expect: Identity, what: str) -> None:
    """The ``.deb``'s control file (``text``) names the package, version and architecture
    its index entry does, and the name and architecture are Debian names: every name
    derived from the package (dpkg's ``info/NAME.*``, its status paragraph, the words of
    the configure script) is then the checked one."""
    fields = Deb822(text)
    for field, want in (
        ("Package", expect.name),
        ("Version", expect.version),
        ("Architecture", expect.architecture),
    ):
        got = fields.get(field)
        if got != want:
            raise DebError(
                f"{what} from {expect.mirror}: its control file says {field} {got!r}, "
                f"its entry in the signed index {want!r}",
                "the mirror serves a package that is not what its index says: it is broken "
                "or hostile",
            )
    if not (NAME.fullmatch(expect.name) and ARCH.fullmatch(expect.architecture)):
        raise DebError(
            f"{what} from {expect.mirror}: {expect.name!r} ({expect.architecture!r}) is not "
            "a Debian package name and architecture",
            "the mirror's index is broken or hostile",
        )


@dataclass(frozen=True)
class DebMember:
    name: str  # in the image (merged-/usr), no leading slash
    path: str  # as the package ships it (dpkg's list), no leading "./"
    mode: int
    uid: int
    gid: int
    size: int = 0
    offset: int = 0
    linkname: str = ""
    rdev: int = 0
    link_group: str = ""


class _Range(io.RawIOBase):
    """``size`` bytes of ``f`` from its current position."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = self.f.read(n)
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)


def ar_members(f: BinaryIO, what: str) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of the ar archive ``f``, positioned at its data."""
    if f.read(8) != b"!<arch>\n":
        raise DebError(f"{what} is not a .deb (no ar header)", "the file is corrupt")
    while True:
        head = f.read(60)
        if not head:
            return
        if len(head) != 60 or head[58:60] != b"`\n":
            raise DebError(f"{what}: truncated ar member header", "the file is corrupt")
        name = head[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(head[48:58].decode().strip())
        except ValueError as exc:
            raise DebError(f"{what}: bad ar member size", "the file is corrupt") from exc
        start = f.tell()
        yield name, size
        f.seek(start + size + (size & 1))


def _data_stream(raw: BinaryIO, name: str, what: str) -> BinaryIO:
    """The tar in the ar member ``name`` (at ``raw``), decompressed."""
    if name.endswith(".zst"):
        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(raw))
    if name.endswith(".xz"):
        return cast(BinaryIO, lzma.LZMAFile(raw))
    if name.endswith(".gz"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    if name.endswith(".tar"):
        return raw
    raise DebError(f"{what}: unknown member {name}", "vmbuild reads gz, xz, zst or plain tars")


def merged_usr(path: str) -> str:
    top = path.partition("/")[0]
    return f"usr/{path}" if top in MERGED else path


def _clean(raw: str, what: str) -> str:
    name = (raw[2:] if raw.startswith("./") else raw).rstrip("/")
    parts = name.split("/") if name else []
    if raw.startswith("/") or ".." in parts or any(p in ("", ".") for p in parts):
        raise DebError(
            f"{what} holds an unsafe member name {raw!r}", "the package is broken or hostile"
        )
    if CONTROL_CHARS.search(raw):  # a newline would add a line to dpkg's .list
        raise DebError(
            f"{what} holds a member name with a control character {raw!r}",
            "the package is broken or hostile",
        )
    return name


def entry_name(sha256: str) -> str:
    """The cache file of the package whose ``.deb`` has ``sha256`` (in this layout)."""
    return f"{sha256}-{FORMAT}"


def unpack(deb: Path, dest: Path, what: str, expect: Identity) -> None:
    """Read ``deb`` into the file ``dest`` (written under a temporary name, renamed
    once whole): its members' bytes, control files, dpkg list and record. Its control
    file must say it is ``expect`` (:func:`check_control`)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        members: list[DebMember] = []
        control: dict[str, tuple[bytes, int]] = {}
        seen_data = False
        with open(deb, "rb") as f, open(tmp, "wb") as file:
            hashing = _Checksummed(file)  # (its count is the offset: the file starts empty)
            out = cast(BinaryIO, hashing)
            for name, size in ar_members(f, what):
                if name.startswith("control.tar"):
                    with _data_stream(_Range(f, size), name, what) as stream:  # type: ignore[arg-type]
                        control = _read_control(stream, what)
                    if "control" in control:
                        check_control(
                            control["control"][0].decode("utf-8", "replace"), expect, what
                        )
                elif name.startswith("data.tar"):
                    got = None
                    if name.endswith(".xz") and size >= XZ_LARGE:
                        got = _read_data_xz(deb, f.tell(), out, what)
                    if got is None:
                        with _data_stream(_Range(f, size), name, what) as stream:  # type: ignore[arg-type]
                            got = _read_data(stream, out, what)
                    members = _check_shapes(got, what)
                    seen_data = True
            if not (seen_data and "control" in control):
                raise DebError(f"{what} has no control.tar or data.tar", "the file is corrupt")
            record = _write_record(hashing, members, control)
        os.replace(tmp, dest)
        _RECORDS[dest] = record
    except (*_BROKEN, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        why = exc.message if isinstance(exc, tarread.TarError) else exc
        raise DebError(f"{what} cannot be read: {why}", "the file is corrupt") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def control_text(deb: Path, what: str) -> str:
    """The ``control`` file of ``deb`` (its data is not read)."""
    try:
        with open(deb, "rb") as f:
            for name, size in ar_members(f, what):
                if name.startswith("control.tar"):
                    with _data_stream(_Range(f, size), name, what) as stream:  # type: ignore[arg-type]
                        control = _read_control(stream, what).get("control")
                    if control is not None:
                        return control[0].decode("utf-8", "replace")
    except _BROKEN as exc:
        why = exc.message if isinstance(exc, tarread.TarError) else exc
        raise DebError(f"{what} cannot be read: {why}", "the file is corrupt") from exc
    raise DebError(f"{what} has no control file", "the file is corrupt")


def _write_record(
    out: _Checksummed, members: list[DebMember], control: dict[str, tuple[bytes, int]]
) -> dict[str, Any]:
    """After the members' bytes: the control files, the dpkg list, the record, the
    trailer."""
    at = out.tell()
    files: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for name, (data, mode) in sorted(control.items()):
        out.write(data)
        files[name] = [at, len(data), mode]
        at += len(data)
        if name in dpkgdb.FROM_CONTROL:
            texts[name] = data.decode("utf-8", "replace")
    listed = dpkgdb.list_of(m.path for m in members)
    out.write(listed)
    record = {
        # each member's fields in order (rows, not objects: 6,000 of them an image)
        "members": [list(vars(m).values()) for m in members],
        "control": files,
        "list": [at, len(listed)],
        **dpkgdb.facts(texts),
    }
    at += len(listed)
    out.write(json.dumps(record, separators=(",", ":")).encode())
    out.write(TRAILER + b"%016x %08x\n" % (at, out.crc))
    return record


@functools.cache
def _xz() -> str | None:
    return shutil.which("xz")


def _read_data_xz(deb: Path, start: int, payload: BinaryIO, what: str) -> list[DebMember] | None:
    """The data.tar.xz at ``start`` in ``deb``, decompressed by an ``xz`` process (the
    CPU of a large package's xz then runs beside the build's threads, not under their
    GIL; the tar is still read here); None when there is no xz."""
    xz = _xz()
    if xz is None:
        return None
    fd = os.open(deb, os.O_RDONLY)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        argv = [xz, "--decompress", "--stdout", "--single-stream"]  # (the ar's rest ignored)
        with run.spawn(argv, stdin=fd, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            _grow_pipe(proc.stdout.fileno())
            with proc.stdout, open(proc.stdout.fileno(), "rb", PIPE_SIZE, closefd=False) as out:
                members = _read_data(out, payload, what)
                while out.read(1 << 16):  # the tar's padding: xz must end well
                    pass
            if proc.wait() != 0:
                raise DebError(f"{what}: its data.tar.xz does not decompress", "it is corrupt")
    finally:
        os.close(fd)
    return members


def _grow_pipe(fd: int) -> None:
    """Let ``xz`` run ahead of the reader by a megabyte (Linux; else the 64 KiB default)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)


def _read_control(stream: BinaryIO, what: str) -> dict[str, tuple[bytes, int]]:
    """The control files dpkg keeps: name -> (bytes, mode)."""
    out: dict[str, tuple[bytes, int]] = {}
    tar = tarread.TarReader(stream)
    for ti in tar:
        name = _clean(ti.name, what) if ti.name not in (".", "./") else ""
        if ti.isreg and name in CONTROL_FILES:
            if ti.size > 16 << 20:
                raise DebError(f"{what}: its control file {name} is too large", "it is broken")
            data = io.BytesIO()
            tar.copy_data(data)
            out[name] = (data.getvalue(), 0o755 if ti.mode & 0o100 else 0o644)
    return out


def _read_data(stream: BinaryIO, payload: BinaryIO, what: str) -> list[DebMember]:
    out: list[DebMember] = []
    names: dict[str, int] = {}  # shipped path -> index in out
    payload.write(PAYLOAD_HEAD)
    offset = len(PAYLOAD_HEAD)
    tar = tarread.TarReader(stream)
    for ti in tar:
        if ti.name in (".", "./", ""):
            continue
        path = _clean(ti.name, what)
        name = merged_usr(path)
        perms = ti.mode & 0o7777
        common = {"name": name, "path": path, "uid": ti.uid, "gid": ti.gid}
        kind = ti.type
        if ti.isreg:
            tar.copy_data(payload)
            member = DebMember(mode=stat.S_IFREG | perms, size=ti.size, offset=offset, **common)  # type: ignore[arg-type]
            offset += ti.size
        elif kind == tarread.DIR:
            member = DebMember(mode=stat.S_IFDIR | perms, **common)  # type: ignore[arg-type]
        elif kind == tarread.SYMLINK:
            _check_symlink(path, ti.linkname, what)
            member = DebMember(mode=stat.S_IFLNK | 0o777, linkname=ti.linkname, **common)  # type: ignore[arg-type]
        elif kind == tarread.HARDLINK:
            target = _clean(ti.linkname, what)
            at = names.get(target)
            if at is None or not stat.S_ISREG(out[at].mode):
                raise DebError(
                    f"{what}: hard link {path} points to {ti.linkname!r}, not a file before it",
                    "the package is broken or hostile",
                )
            first = out[at]
            group = first.link_group or first.name
            out[at] = dataclasses.replace(first, link_group=group)
            member = DebMember(
                mode=first.mode,
                size=first.size,
                offset=first.offset,
                link_group=group,
                **{**common, "uid": first.uid, "gid": first.gid},  # type: ignore[arg-type]
            )
        elif kind in (tarread.CHAR, tarread.BLOCKDEV):
            dev = stat.S_IFCHR if kind == tarread.CHAR else stat.S_IFBLK
            member = DebMember(
                mode=dev | perms,
                rdev=os.makedev(ti.devmajor, ti.devminor),
                **common,  # type: ignore[arg-type]
            )
        elif kind == tarread.FIFO:
            member = DebMember(mode=stat.S_IFIFO | perms, **common)  # type: ignore[arg-type]
        else:
            raise DebError(f"{what}: member {path} has an unknown type", "the package is broken")
        names[path] = len(out)
        out.append(member)
    return out


_USR_DIRS = frozenset(f"usr/{top}" for top in MERGED)


def _check_shapes(members: list[DebMember], what: str) -> list[DebMember]:
    """``members`` without merged-/usr's own aliases (``bin -> usr/bin``, as trixie's
    base-files ships them: the layer makes those links), refusing what dpkg would take
    but a layer must not hold: a symlink in place of merged-/usr's ``usr/bin`` (and
    sbin, lib*), a 0:0 character device (overlayfs's whiteout mark), a member below a
    symlink of the package (a tar extractor would write through it)."""
    out: list[DebMember] = []
    links: set[str] = set()
    for m in members:
        if stat.S_ISLNK(m.mode):
            if m.name in _USR_DIRS:
                if m.path == m.name[4:] and m.linkname.lstrip("/") == m.name:
                    continue
                raise DebError(
                    f"{what}: its symlink {m.path} -> {m.linkname} would replace merged-/usr's "
                    f"{m.name}",
                    "the package is broken or hostile",
                )
            links.add(m.name)
        if stat.S_ISCHR(m.mode) and m.rdev == 0:
            raise DebError(
                f"{what}: {m.path} is a 0:0 character device (overlayfs's whiteout mark)",
                "the package is broken or hostile",
            )
        out.append(m)
    for m in out if links else ():
        parts = m.name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise DebError(
                    f"{what}: {m.path} lies below its symlink {'/'.join(parts[:i])}",
                    "the package is broken or hostile",
                )
    return out


def _check_symlink(path: str, target: str, what: str) -> None:
    if target.startswith("/"):
        return  # resolved against the image's root
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(merged_usr(path)), target))
    if joined == ".." or joined.startswith("../"):
        raise DebError(
            f"{what}: symlink {path} -> {target} points outside the image",
            "the package is broken or hostile",
        )


class _Checksummed:
    """Writes through to ``sink``, counting the bytes and their CRC-32 (see TRAILER)."""

    def __init__(self, sink: BinaryIO):
        self._sink = sink
        self.crc = 0
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.crc = isal_zlib.crc32(data, self.crc)
        self.size += len(data)
        return self._sink.write(data)

    def tell(self) -> int:
        return self.size


def _crc_of(f: BinaryIO, size: int) -> int:
    """The CRC-32 of the first ``size`` bytes of ``f`` (read from its start)."""
    crc = 0
    f.seek(0)
    while size > 0 and (chunk := f.read(min(PIPE_SIZE, size))):
        crc = isal_zlib.crc32(chunk, crc)
        size -= len(chunk)
    return crc


def is_current(unpacked: Path, memo: FileMemo | None = None) -> bool:
    """Whether ``unpacked`` is a whole entry of this layout: a file whose bytes have
    its trailer's CRC-32 (an empty, truncated, changed or foreign one is not). With
    ``memo``, a version of the file (:func:`vmbuild.cache.file_identity`) found whole
    once is remembered there, and not hashed again."""
    what = ["unpacked", unpacked.name]
    try:
        with open(unpacked, "rb") as f:
            st = os.fstat(f.fileno())
            if memo is not None and memo.recall(st, what) is not None:
                return True
            since = time.time_ns()
            end = f.seek(0, os.SEEK_END)
            if end < TRAILER_SIZE:
                return False
            f.seek(end - TRAILER_SIZE)
            tail = f.read(TRAILER_SIZE)
            f.seek(0)
            whole = tail.startswith(TRAILER) and tail[-9:-1] == b"%08x" % _crc_of(
                f, end - TRAILER_SIZE
            )
            if (
                whole
                and memo is not None
                and file_identity(os.fstat(f.fileno())) == file_identity(st)
            ):
                memo.record(st, what, {"whole": True}, since)
            return whole
    except OSError:  # (a directory, or gone)
        return False


_RECORDS: dict[Path, dict[str, Any]] = {}  # the records read or written by this process


def record_of(unpacked: Path) -> dict[str, Any]:
    """The record of an unpacked package, read once (an entry, named by its .deb's
    SHA256, never changes; do not modify what this returns)."""
    got = _RECORDS.get(unpacked)
    if got is None:
        got = _RECORDS[unpacked] = _read_record(unpacked)
    return got


def _read_record(unpacked: Path) -> dict[str, Any]:
    with open(unpacked, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(end - TRAILER_SIZE)
        tail = f.read(TRAILER_SIZE)
        if not tail.startswith(TRAILER):
            raise DebError(f"{unpacked} is not an unpacked package", "delete it")
        start = int(tail[len(TRAILER) : len(TRAILER) + 16], 16)
        f.seek(start)
        return cast(dict[str, Any], json.loads(f.read(end - TRAILER_SIZE - start)))


def read_members(unpacked: Path) -> list[DebMember]:
    return [DebMember(*m) for m in record_of(unpacked)["members"]]


def control_file(unpacked: Path, name: str) -> tuple[int, int, int] | None:
    """(offset, size, mode) of the control file ``name`` in the entry (None: not there)."""
    got = record_of(unpacked)["control"].get(name)
    return None if got is None else (got[0], got[1], got[2])


def read_control_file(unpacked: Path, name: str) -> bytes | None:
    where = control_file(unpacked, name)
    if where is None:
        return None
    with open(unpacked, "rb") as f:
        f.seek(where[0])
        return f.read(where[1])
