"""How an image is written (:class:`OutputOptions`), and writing it to --out atomically.

The image is written under a temporary name in the destination's directory and renamed
into place only when complete, so --out never holds half an image. A docker-archive is
compressed as a whole (like dockerTools' ``.tar.gz``; its layers stay plain tars
inside); OCI formats compress each new layer instead, so their outer tar (or directory)
is plain.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from vmbuild import parts
from vmbuild.errors import SpecError, VmbuildError
from vmbuild.oci import archive
from vmbuild.oci.compress import COMPRESSIONS, Compression, check_level, compressor
from vmbuild.oci.filecopy import EndedEarly, kernel_copy
from vmbuild.oci.image import Image

if TYPE_CHECKING:
    from vmbuild.oci.referrers import Artifact

FORMATS = ("docker-archive", "oci-archive", "oci")
SBOM_FORMATS = ("spdx", "cyclonedx")


@dataclass(frozen=True)
class AttestOptions:
    """What a build states about itself beside the image (:mod:`vmbuild.sbom`): an SBOM
    (``sbom``, in ``sbom_format``) and an in-toto provenance statement (``provenance``);
    ``spec_file`` is the spec they describe. OCI outputs also carry both inside."""

    sbom: Path | None = None
    sbom_format: str = "spdx"
    provenance: Path | None = None
    spec_file: Path | None = None

    def __post_init__(self) -> None:
        if self.sbom_format not in SBOM_FORMATS:
            raise SpecError(
                f"unknown --sbom-format {self.sbom_format!r}",
                f"use one of {', '.join(SBOM_FORMATS)}",
            )

    @property
    def wanted(self) -> bool:
        return self.sbom is not None or self.provenance is not None


@dataclass(frozen=True)
class OutputOptions:
    """How an image is written: format, and compression (of layers, or of a docker-archive)."""

    format: str = "docker-archive"
    compression: Compression = "gzip"
    level: int | None = None
    attest: AttestOptions = field(default_factory=AttestOptions)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SpecError(f"unknown format {self.format!r}", f"use one of {', '.join(FORMATS)}")
        if self.compression not in COMPRESSIONS:
            raise SpecError(
                f"unknown compression {self.compression!r}", f"use one of {', '.join(COMPRESSIONS)}"
            )
        check_level(self.compression, self.level)


def output_error(out: Path, exc: OSError) -> VmbuildError:
    """One clear line for a failed write of ``out`` (disk full, read-only, ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free space in {out.parent} or write elsewhere"
    elif exc.errno == errno.EROFS:
        hint = "write to a writable file system"
    else:
        hint = "check the path and its permissions"
    return VmbuildError(f"cannot write {out}: {reason}", hint)


def resolve_out(out: Path, directory: bool) -> Path:
    """Where an output for ``out`` really goes, checked before any work is done.

    A symlink at ``out`` is followed (its target is replaced, the link kept). An archive
    (``directory`` false) may replace only a regular file, a layout directory only a
    directory; a missing or read-only parent directory is refused here too.
    """
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    if target.name in ("", ".", ".."):
        raise SpecError(f"--out {out} is a directory", "give a file name, e.g. image.tar.gz")
    parent = target.parent
    if not parent.is_dir():
        raise SpecError(f"output directory {parent} does not exist", "create it first")
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None and directory and not stat.S_ISDIR(st.st_mode):
        raise SpecError(
            f"--out {out} exists and is not a directory",
            "--format oci writes a layout directory: remove the file or give another path",
        )
    if st is not None and not directory and stat.S_ISDIR(st.st_mode):
        raise SpecError(
            f"--out {out} is a directory",
            "give a file name for the archive, or --format oci for a layout directory",
        )
    if st is not None and not directory and not stat.S_ISREG(st.st_mode):
        raise SpecError(
            f"--out {out} is a special file (a device, pipe or socket), not a regular file",
            "give the path of a regular file; to write to a pipe, use vmbuild stream",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "a read-only file system" if _read_only(parent) else "not writable"
        raise VmbuildError(f"cannot write to {parent}: {reason}", "give a writable --out")
    return target


def _read_only(directory: Path) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


def sweep_parts(out: Path) -> None:
    """Remove ``.part`` files and directories left beside ``out`` by builds that died
    (:mod:`vmbuild.parts`: a writer holds ``flock`` on its part)."""
    parts.sweep(out, old=True)


class _OutFile:
    """The part file, unbuffered (so closing it never fails late): whole writes only, and
    a write that fails (disk full, read-only) becomes one clear error."""

    def __init__(self, fd: int, out: Path):
        self._fd = fd
        self._out = out
        self._pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            raise output_error(self._out, exc) from exc
        self._pos += len(data)
        return len(data)

    def copy_range(self, fd: int, offset: int, size: int) -> None:
        """``size`` bytes of the file ``fd`` from ``offset``, copied by the kernel."""
        try:
            kernel_copy(fd, self._fd, offset, size)
        except EndedEarly:
            raise
        except OSError as exc:
            raise output_error(self._out, exc) from exc
        self._pos += size

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def writable(self) -> bool:
        return True


def open_part(out: Path) -> tuple[int, Path]:
    """A new part file beside ``out`` (after sweeping dead builds' parts), locked as
    :func:`sweep_parts` expects: its descriptor and path."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise VmbuildError(f"output directory {directory} does not exist", "create it first")
    try:
        fd, tmp = parts.create(out, old=True)
    except OSError as exc:
        raise output_error(out, exc) from exc
    return fd, tmp


@contextlib.contextmanager
def atomic_file(out: Path) -> Iterator[BinaryIO]:
    """A file under a temporary name beside ``out``, renamed to ``out`` on success.

    ``out`` should come from :func:`resolve_out` (a symlink there is replaced otherwise).
    """
    fd, tmp = open_part(out)
    try:
        yield cast(BinaryIO, _OutFile(fd, out))
        try:
            os.fchmod(fd, 0o644)
        except OSError as exc:
            raise output_error(out, exc) from exc
        _into_place(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def _into_place(tmp: Path, out: Path) -> None:
    """Rename the finished part file to ``out``. An older ``out`` is swapped with it in
    one step (``RENAME_EXCHANGE``), then removed: ext4 writes a file renamed over another
    out to disk at once (its auto_da_alloc: about 0.1 s for a 165 MB image here), an
    exchange leaves that to the kernel's writeback, and readers see the old or the new
    image either way."""
    if out.exists() and not out.is_symlink() and archive.exchange(tmp, out):
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # the old image now; a failure leaves a part for sweep_parts
        return
    os.replace(tmp, out)


def write_image(
    image: Image,
    out: Path,
    opts: OutputOptions,
    mtime: int,
    referrers: Sequence[Artifact] = (),
) -> None:
    """Write ``image`` to ``out`` in ``opts.format``; OCI formats hold ``referrers``
    (documents attached to the image), a docker-archive cannot."""
    if opts.format == "oci":
        _write_layout(image, out, referrers)
        return
    with atomic_file(out) as f:
        if opts.format == "oci-archive":
            archive.write_oci_archive(image, f, mtime, referrers)
        elif opts.compression == "none":  # straight into the file: layers copied by the kernel
            archive.write_docker_archive(image, f, mtime)
        else:
            with compressor(f, opts.compression, opts.level) as z:
                archive.write_docker_archive(image, z, mtime)


def _write_layout(image: Image, out: Path, referrers: Sequence[Artifact]) -> None:
    directory = out.parent if str(out.parent) else Path(".")
    sweep_parts(out)
    try:
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f"{parts.prefix(out)}{os.getpid()}.", suffix=".part", dir=directory
            )
        )
    except OSError as exc:
        raise output_error(out, exc) from exc
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            archive.write_oci_layout(image, tmp, referrers)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
                raise output_error(out, exc) from exc
            raise
        os.chmod(tmp, 0o755)
        archive.replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)
