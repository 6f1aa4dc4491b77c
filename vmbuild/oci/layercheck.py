"""Checking a layer while its bytes pass: digest, diff_id and every member's name.

:func:`check_layer` reads a layer blob (compressed or not) to its end, once. It hashes
the bytes as read (the blob's digest) and as decompressed (the diff_id), walks the tar's
headers with :mod:`vmbuild.oci.tarread` (the reader of every untrusted tar; where it
accepts a tar, tarfile, which merges base layers later, reads the same members) and
checks each name and link target with :class:`LayerNames`.
The bytes can be passed on meanwhile, as read (``copy``) or decompressed (``plain``).
Each of these is one :class:`~vmbuild.errors.ImageError`:

- a digest or diff_id that does not match the bytes;
- bytes that are not a tar, a corrupt header part-way, data that ends inside a
  member, or anything else :mod:`~vmbuild.oci.tarread` refuses: never read as an empty
  or shorter layer;
- an absolute name or one climbing out with ``..``, a symlink whose relative target
  climbs out of the root, a whiteout of nothing or of ``..``, a hard link whose target
  is not (a link to) a regular file of the layer.

A tar that ends after a member without its end-of-archive blocks is read to that
member, as container runtimes read it.

:class:`CheckedBlob` is a base image layer's blob that runs the check the first time its
bytes are read, whichever way (copied into an output, or decompressed for a merge or
the build VM), and not again.

Across builds (under :func:`remembering`, which the builders set up with
``vmbuild.cache.FileMemo``), a check that passed is remembered for that version of the
file: its device, inode, size, mtime and ctime, with the blob's offset, size,
compression and expected diff_id/digest. A later build reading the same blob of the
same version trusts the remembered digest instead of reading 165 MB again. Why this
cannot let changed bytes through:

- a write or truncation sets the file's ctime to the current time, and no system call
  sets a ctime (``utime`` sets mtime and atime only): only changing the system clock
  would, which takes root, and root can change the build anyway. A file renamed or made
  anew at the path has another inode or ctime. (A write through a shared mapping stamps
  the file when it first dirties a page after writeback: a process holding such a
  mapping could write again unstamped, but it could as well write during any build.)
- the clock the kernel stamps files with is coarse, so a change within the same tick as
  a check could leave the ctime as it was: a file whose ctime or mtime is less than
  ``cache.RACY_NS`` (3 s) before the check began is checked, never remembered;
- the status recorded is taken on the open file the check read (``fstat``), before the
  check, and must be unchanged after it; a trusted read takes it again on the file it
  copies from, before and after: a write meanwhile fails the build (the output is a
  part file, never renamed into place);
- the memo lives in the user's own cache directory, as the step cache and the lower
  images do: whoever can write there can already change what a build uses. A memo file
  that is missing, garbage or for other expectations is a miss: the layer is checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol, cast

from vmbuild.cache import file_identity
from vmbuild.errors import ImageError
from vmbuild.oci import tarread
from vmbuild.oci.compress import Compression, decompressor
from vmbuild.oci.image import BlobRef, Window
from vmbuild.oci.layout import OPAQUE, WHITEOUT
from vmbuild.oci.safety import check_member, whiteout_target
from vmbuild.oci.sinks import HashingReader, SinkFailed

CHUNK = 1 << 20
MEMO_KIND = "layer-checks-v1"  # the cache directory of remembered checks
MEMO_FORMAT = "vmbuild-layer-check-3"  # part of each key: a new rule here forgets them all


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a layer that is not a good tar raises, the decompressors' errors
    included (``except read_errors()`` imports them only when something was raised: a
    build that reads no zstd layer starts without zstandard, ~4 ms)."""
    import zstandard
    from isal import isal_zlib

    return (
        tarfile.TarError,
        EOFError,
        OSError,
        ValueError,
        zlib.error,
        zstandard.ZstdError,
        cast(type[BaseException], isal_zlib.error),
    )


class Checked(NamedTuple):
    """What a checked layer's bytes hash to, and how many there were."""

    digest: str  # sha256 of the blob as read
    size: int
    diff_id: str  # sha256 of the plain tar
    plain_size: int


class LayerNames:
    """The name rules of an untrusted layer, wherever its tar is read (a base layer
    here, a pulled one by :mod:`vmbuild.registry.layerscan`): each member's name and
    link target by :func:`~vmbuild.oci.safety.check_member`, a whiteout's hidden name,
    and (at :meth:`done`) every hard link resolving to a regular file of the layer."""

    def __init__(self, where: str):
        self.where = where
        self._regular: set[str] = set()
        self._links: dict[str, str] = {}

    def add(self, head: tarread.Header) -> None:
        member = check_member(
            head.name,
            self.where,
            symlink_to=head.linkname if head.type == tarread.SYMLINK else None,
            hardlink_to=head.linkname if head.type == tarread.HARDLINK else None,
        )
        name = member.name
        if not name:
            return
        self._regular.discard(name)
        self._links.pop(name, None)
        base = name.rpartition("/")[2]
        if base.startswith(WHITEOUT) and base != OPAQUE:
            whiteout_target(name, base, self.where)
        if member.hardlink_to is not None:
            self._links[name] = member.hardlink_to
        elif head.isreg:
            self._regular.add(name)

    def done(self) -> None:
        for name, target in self._links.items():
            if not _resolves(name, self._links, self._regular):
                raise ImageError(
                    f"{self.where}: hard link {name} -> {target} has no target in the layer",
                    "the layer is malformed",
                )


def _resolves(name: str, links: dict[str, str], regular: set[str]) -> bool:
    seen: set[str] = set()
    while name in links:
        if name in seen:
            return False
        seen.add(name)
        name = links[name]
    return name in regular


def _scan(stream: BinaryIO, where: str) -> None:
    names = LayerNames(where)
    try:
        for head in tarread.TarReader(stream):
            names.add(head)
    except tarread.TarError as exc:
        raise ImageError(f"{where}: {exc.message}", "the layer is truncated or damaged") from None
    names.done()


def check_layer(
    raw: BinaryIO,
    compression: Compression,
    where: str,
    *,
    digest: str | None = None,
    diff_id: str | None = None,
    copy: BinaryIO | None = None,
    plain: BinaryIO | None = None,
) -> Checked:
    """Read the layer blob ``raw`` to its end and check it (see the module's text).

    ``digest`` and ``diff_id``, when given, must match. Errors of ``copy`` and
    ``plain`` (a full disk) propagate as they are.
    """
    blob = HashingReader(raw, copy, plain if compression == "none" else None)
    try:
        # a plain layer's bytes are its tar: hashed once
        tar_bytes = (
            blob
            if compression == "none"
            else HashingReader(decompressor(cast(BinaryIO, blob), compression), plain)
        )
        _scan(cast(BinaryIO, tar_bytes), where)
        tar_bytes.drain()
        blob.drain()
    except SinkFailed as failed:
        raise failed.exc from None
    except read_errors() as exc:
        what = "tar" if compression == "none" else f"{compression}-compressed tar"
        raise ImageError(f"{where}: not a readable {what} ({exc})", "the image is corrupt") from exc
    got = Checked(blob.digest, blob.size, tar_bytes.digest, tar_bytes.size)
    if digest is not None and got.digest != digest:
        raise ImageError(
            f"{where}: its bytes hash to {got.digest}, not its digest {digest}",
            "the image is corrupt or was altered",
        )
    if diff_id is not None and got.diff_id != diff_id:
        raise ImageError(
            f"{where}: its tar hashes to {got.diff_id}, not its diff_id {diff_id}",
            "the image is corrupt or was altered",
        )
    return got


class Memo(Protocol):
    """Where checks of unchanged files are remembered (``vmbuild.cache.FileMemo``): by
    the file's status and what was checked of it."""

    def recall(self, st: os.stat_result, what: Sequence[object], /) -> dict[str, Any] | None: ...

    def record(
        self, st: os.stat_result, what: Sequence[object], facts: dict[str, Any], since_ns: int, /
    ) -> None: ...


_memo: ContextVar[Memo | None] = ContextVar("vmbuild_layer_checks", default=None)


@contextlib.contextmanager
def remembering(memo: Memo | None) -> Iterator[None]:
    """Within the block, a base layer is checked once per version of its file (see the
    module's text); ``memo`` keeps what was checked."""
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return file_identity(a) == file_identity(b)


class CheckedBlob:
    """A base image layer's bytes (``ref``), checked by :func:`check_layer` the first
    time they are read and trusted from then on. ``digest`` is checked when given, and
    known once checked. Under :func:`remembering`, a blob of a file checked before in
    the same version is trusted without reading it twice."""

    def __init__(
        self,
        ref: BlobRef,
        compression: Compression,
        where: str,
        *,
        diff_id: str,
        digest: str | None = None,
    ):
        self.ref = ref
        self.compression = compression
        self.where = where
        self.diff_id = diff_id
        self.digest = digest
        self.checked = False

    @property
    def size(self) -> int:
        return self.ref.size

    @property
    def path(self) -> Path:
        return self.ref.path

    @property
    def offset(self) -> int:
        return self.ref.offset

    @property
    def checks_next_read(self) -> bool:
        """Whether the next read hashes the tar against the diff_id (not checked yet, and
        no remembered check may be trusted instead): a reader need not hash it again."""
        return not self.checked and _memo.get() is None

    def _what(self) -> list[object]:
        """What a remembered check covered: this blob of the file, as expected."""
        return [MEMO_FORMAT, self.ref.offset, self.ref.size, self.compression, self.diff_id,
                self.digest]  # fmt: skip

    def _recalled_digest(self, st: os.stat_result) -> str | None:
        """The digest a check of this version of the file found before, if one did."""
        memo = _memo.get()
        if memo is None:
            return None
        facts = memo.recall(st, self._what())
        if facts is None or facts.get("diff_id") != self.diff_id:
            return None
        digest = facts.get("digest")
        if not isinstance(digest, str) or self.digest not in (None, digest):
            return None
        return digest

    def _recall(self, st: os.stat_result) -> bool:
        """Whether this version of the file was checked before: then it is trusted."""
        digest = self._recalled_digest(st)
        if digest is None:
            return False
        self.digest = digest
        return True

    def _unchanged(self, before: os.stat_result, after: os.stat_result) -> None:
        """:class:`ImageError` unless the two statuses are of one version of the file."""
        if not _same_file(before, after):
            raise ImageError(
                f"{self.where}: its file {self.ref.path} changed while it was read",
                "build again once nothing writes to the base image",
            )

    def _check(self, copy: BinaryIO | None, plain: BinaryIO | None) -> None:
        with self.ref.window() as raw:
            before = raw.fstat()
            started = time.time_ns()
            what = self._what()  # before the check: a digest not given is not yet known
            got = check_layer(
                cast(BinaryIO, raw),
                self.compression,
                self.where,
                digest=self.digest,
                diff_id=self.diff_id,
                copy=copy,
                plain=plain,
            )
            after = raw.fstat()
        if got.size != self.ref.size:
            raise ImageError(
                f"{self.where}: ended after {got.size} of its {self.ref.size} bytes",
                "the image is truncated",
            )
        self._unchanged(before, after)
        self.digest = got.digest
        self.checked = True
        memo = _memo.get()
        if memo is not None:
            memo.record(before, what, {"diff_id": got.diff_id, "digest": got.digest}, started)

    def _trusted(self, use: Callable[[Window], None]) -> bool:
        """``use(window)`` if this version of the file was checked before; whether it was.
        The file must be the same version after ``use`` too."""
        if _memo.get() is None:
            return False
        with self.ref.window() as raw:
            before = raw.fstat()
            if not self._recall(before):
                return False
            use(raw)
            self._unchanged(before, raw.fstat())
        self.checked = True
        return True

    def copy_to(self, sink: BinaryIO) -> None:
        """The blob's bytes as stored into ``sink`` (checked on the way the first time)."""
        if self.checked:
            self.ref.copy_to(sink)
        elif not self._trusted(lambda raw: raw.copy_to(sink)):
            self._check(sink, None)

    def verify(self) -> None:
        if not self.checked and not self._trusted(lambda raw: None):
            self._check(None, None)

    def plain_to(self, sink: BinaryIO) -> None:
        """The layer's plain tar into ``sink`` (checked on the way the first time)."""
        if not self.checked:
            if self._trusted(lambda raw: self._decompress(cast(BinaryIO, raw), sink)):
                return
            self._check(None, sink)
            return
        with self.ref.reader() as raw:
            self._decompress(raw, sink)

    def _decompress(self, raw: BinaryIO, sink: BinaryIO) -> None:
        shutil.copyfileobj(decompressor(raw, self.compression), sink, CHUNK)
