"""A docker-archive's base layers copied into its part file while the build goes on.

An uncompressed docker-archive begins with the base image's layers, byte for byte
(:mod:`.archive`), and where each one's data lies in it follows from the names and
sizes alone (:func:`~vmbuild.oci.archive.leading_layers`). So once the base is read,
and its layers are trusted without reading them (a check of this version of their file
is remembered, :meth:`~vmbuild.oci.layercheck.CheckedBlob.remembered`), a thread copies
them to their places in the output's part file (by the kernel: the thread waits in
``copy_file_range`` without the GIL) while the build goes on: on a step-cache hit that
is the 0.1 s copy of a 165 MB base done beside the step's lookup instead of after it.
The writer writes every other byte around them (:class:`~vmbuild.oci.tarstream.Prefilled`
skips each copied member at the very offset planned), then waits for the copy and fails
if it did (the base's file changed, the disk is full) before the part is renamed into
place; so the output is the same bytes, published the same way, as without. Durability
is as without too: no fsync, the part goes into place by ``RENAME_EXCHANGE``
(:func:`vmbuild.oci.output.atomic_file`), its pages are written back by the kernel.

The thread only reads the base and writes the part file; it stops between 256 MiB pieces
when the build gives the part up (an error, Ctrl-C), and :meth:`HeadStart.close`
removes the part and waits for it: nothing is left behind, no thread outlives the build.
Only the copy runs in the thread: the base's files are opened, and found to be the
version the memo knows, by the build's own thread before the copy and again after it.
The blobs are not marked checked by this, so every other use of the base (the build
VM's lower images) checks or trusts it as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from vmbuild.oci import archive, output
from vmbuild.oci.filecopy import EndedEarly, copy_at
from vmbuild.oci.image import Layer, Window
from vmbuild.oci.layercheck import CheckedBlob

# what a failed write of the part file means for the user (the output's disk)
OUTPUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
# base layers copied ahead at most (each holds its file open meanwhile): the writer
# copies any after them in order, as without a head start
MAX_AHEAD = 64


class _At:
    """The part file from one offset on, for a window's ``copy_to``."""

    def __init__(self, fd: int, at: int, head: HeadStart):
        self._fd = fd
        self._at = at
        self._head = head

    def copy_range(self, fd: int, offset: int, size: int) -> None:
        copy_at(fd, self._fd, offset, size, self._at, self._head.going)
        self._at += size


class HeadStart:
    """The part file of ``out`` (a docker-archive without compression, the headers'
    mtime ``mtime``) with its base layers copied ahead, once :meth:`start` is given
    them; :func:`~vmbuild.oci.output.write_image` writes the rest into it."""

    def __init__(self, out: Path, mtime: int):
        self.out = out
        self.mtime = mtime
        self.part: tuple[int, Path] | None = None  # the part file's descriptor and path
        self.published = False
        self._ahead: dict[int, tuple[object, int]] = {}  # offset -> blob, size (not taken)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._error: BaseException | None = None
        self._windows = contextlib.ExitStack()  # the base files, open while copied
        self._copies: list[tuple[int, CheckedBlob, Window, os.stat_result]] = []

    def start(self, layers: Sequence[Layer]) -> None:
        """Copy the leading ``layers`` that are trusted as they are into place.

        Each blob's file is opened and its version checked here, and again by
        :meth:`finish` once copied: the thread makes no system call but the copy's (each
        other one would wait for the GIL again, up to 5 ms, while this thread runs)."""
        if self.part is not None:
            return
        try:
            for offset, blob in archive.leading_layers(layers, self.mtime)[:MAX_AHEAD]:
                if not isinstance(blob, CheckedBlob):
                    break
                raw = self._windows.enter_context(blob.ref.window())
                version = raw.fstat()
                if not blob.remembered(version):
                    break
                self._copies.append((offset, blob, raw, version))
            if self._copies:
                self.part = output.open_part(self.out)
                self._reserve(max(at + blob.size for at, blob, _, _ in self._copies))
        except BaseException:
            self._windows.close()
            raise
        if self.part is None:
            self._windows.close()
            self._copies = []
            return
        self._ahead = {offset: (blob, blob.size) for offset, blob, _, _ in self._copies}
        plan = [(raw, offset) for offset, _, raw, _ in self._copies]
        self._thread = threading.Thread(
            target=self._copy, args=(self.part[0], plan), name="vmbuild-head-start"
        )
        self._thread.start()

    def _reserve(self, end: int) -> None:
        """Allocate the part file's blocks up to ``end`` before the copy fills them.

        A base layer's offset in the output seldom matches its offset in the base's
        archive modulo the page size (512 and 1024 for the bench's Debian base), and
        then the kernel's copy into freshly allocated blocks is slowest: 165 MB copied in
        about 100 ms here, 80 ms into blocks allocated first (fallocate itself: < 1 ms),
        and the copy is what a step-cache hit waits for. The file's size becomes ``end``
        at once; the writer still writes every byte before and after the copied
        layers, so the finished archive is the same. A full disk is now found here."""
        assert self.part is not None
        try:
            os.posix_fallocate(self.part[0], 0, end)
        except OSError as exc:
            if exc.errno in OUTPUT_ERRORS:  # the part goes with close(), as on any error
                raise output.output_error(self.out, exc) from exc
            # a file system without fallocate: the copy allocates as it writes

    def going(self) -> bool:
        return not self._stop

    def _copy(self, fd: int, plan: list[tuple[Window, int]]) -> None:
        try:
            for raw, at in plan:
                raw.copy_to(_At(fd, at, self))  # type: ignore[arg-type]
                if self._stop:
                    return
        except BaseException as exc:  # raised in the build's own thread by finish()
            self._error = exc

    def take(self, pos: int, source: object, size: int) -> bool:
        """Whether ``size`` bytes of ``source`` are being copied to ``pos``."""
        ahead = self._ahead.get(pos)
        if ahead is None or ahead[0] is not source or ahead[1] != size:
            return False
        del self._ahead[pos]
        return True

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Wait for the copy; its error, if it failed, is the build's."""
        self._join()
        exc, self._error = self._error, None
        if isinstance(exc, EndedEarly):
            raise OSError(f"{self.out}: a base layer's file ended early") from exc
        if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRORS:
            raise output.output_error(self.out, exc) from exc
        if exc is not None:
            raise exc
        for _, blob, raw, version in self._copies:
            blob.unchanged(version, raw.fstat())  # the version the memo knows, throughout
        if self._ahead:
            raise RuntimeError(f"{self.out}: written without the base layers copied ahead")

    def close(self) -> None:
        """Stop and wait for the copy; remove the part unless it was published (first:
        a second Ctrl-C while waiting leaves no part behind either)."""
        self._stop = True
        if self.part is not None and not self.published:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part[1])
        self._join()
        self._windows.close()
        if self.part is not None:
            fd, self.part = self.part[0], None
            os.close(fd)


@contextlib.contextmanager
def head_start(out: Path, opts: output.OutputOptions, mtime: int) -> Iterator[HeadStart | None]:
    """A :class:`HeadStart` for writing ``out`` as ``opts`` say, if they say an
    uncompressed docker-archive (None otherwise), closed at the block's end."""
    if opts.format != "docker-archive" or opts.compression != "none":
        yield None
        return
    head = HeadStart(out, mtime)
    try:
        yield head
    finally:
        head.close()
