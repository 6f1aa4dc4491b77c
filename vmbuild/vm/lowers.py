"""A base image's layers as read-only ext4 images: the overlay lowers the guest mounts.

Each lower is what its layer changed in the tree a runtime unpacks (see
:mod:`vmbuild.oci.rootfs`), in overlay form (see :mod:`vmbuild.oci.overlay`), so it
depends on the layers below it too: it is cached under the layer's chain id (the
diff_ids from the bottom up to it), in ``cache_dir()/lowers/<key>/``. Making one needs
no root: ``mke2fs -d`` and ``debugfs`` write the image (:mod:`vmbuild.vm.ext4image`).
The guest mounts each image read-only and stacks them under the overlay, so a step
reads only what it touches.

A build VM has few disks (``vm.qemu.MAX_DISKS``): with more lowers than the disks left
for them, the bottom ones are merged on the host into one image (the tree they make
together), cached under the chain id of the topmost of them. A layer that changes
nothing has no image. An entry is published atomically; one that is not a whole ext4
image of its recorded size is ignored and made again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from vmbuild import cache, tempdirs
from vmbuild.errors import ImageError
from vmbuild.oci.image import Layer
from vmbuild.oci.merge import open_layers
from vmbuild.oci.retar import Entry, write_entries
from vmbuild.oci.rootfs import Rootfs
from vmbuild.vm import ext4image

log = logging.getLogger("vmbuild")

KIND = "lowers"
FORMAT = "ext4-lower-v1"
IMAGE = "lower.ext4"
EMPTY = "empty"
META = "meta.json"
EXT4_MAGIC_AT = 1024 + 0x38
RAM = Path("/dev/shm")  # a tmpfs on Linux: where a lower's files are staged, if they fit
# Called with (lowers done, lowers in all, bytes of images made so far).
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Group:
    """Layers ``first``..``last`` (indices, bottom first) as one lower, under ``key``."""

    first: int
    last: int
    key: str


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain id of each layer: sha256 over the chain below and its diff_id."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def plan(layers: Sequence[Layer], max_disks: int) -> list[Group]:
    """Which layers make which lower: one each, the bottom ones merged beyond ``max_disks``."""
    chains = chain_ids([layer.diff_id for layer in layers])
    merged = max(0, len(layers) - max_disks + 1)
    groups = []
    if merged > 1:
        groups.append(Group(0, merged - 1, cache.key([FORMAT, "merged", chains[merged - 1]])))
    for n in range(merged if merged > 1 else 0, len(layers)):
        groups.append(Group(n, n, cache.key([FORMAT, chains[n]])))
    return groups


def _cached(group: Group) -> Path | bool | None:
    """The group's image, None for a lower that is empty, False when not (validly) cached.
    The entry is held for the build (:func:`vmbuild.cache.hold`): the VM opens it later."""
    where = cache.entry(KIND, group.key)
    cache.hold(where)
    try:
        meta = json.loads((where / META).read_text())
        if meta.get("format") != FORMAT:
            return False
        if meta.get("empty"):
            return None
        image = where / IMAGE
        with open(image, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(EXT4_MAGIC_AT)
            magic = f.read(2)
        return image if size == meta.get("size") and magic == b"\x53\xef" else False
    except (OSError, ValueError, AttributeError):
        return False


def images(
    layers: Sequence[Layer], workdir: Path, max_disks: int, progress: Progress | None = None
) -> list[Path]:
    """The lower images of ``layers`` (at most ``max_disks``), bottom first, made (and
    cached) where missing."""
    groups = plan(layers, max_disks)
    found = {g.key: _cached(g) for g in groups}
    missing = [g for g in groups if found[g.key] is False]
    if missing:
        _make(layers, groups, {g.key for g in missing}, workdir, found, progress)
    elif progress:
        progress(len(groups), len(groups), 0)
    return [p for p in (found[g.key] for g in groups) if isinstance(p, Path)]


def _make(
    layers: Sequence[Layer],
    groups: list[Group],
    todo: set[str],
    workdir: Path,
    found: dict[str, Path | bool | None],
    progress: Progress | None,
) -> None:
    fs = Rootfs()
    made_bytes = 0
    ends = {g.last: g for g in groups}
    with contextlib.ExitStack() as stack:
        tars = open_layers(layers, workdir, stack)
        for n, tar in enumerate(tars):
            where = f"base layer {n + 1}"
            try:
                change = fs.apply(tar, n, where)
            except (tarfile.TarError, EOFError) as exc:
                raise ImageError(f"{where}: not a readable tar ({exc})", _HINT) from exc
            group = ends.get(n)
            if group is None or group.key not in todo:
                continue
            entries = fs.entries() if group.first != group.last else fs.lower(change)
            found[group.key] = _publish(group, entries, workdir, where)
            if isinstance(found[group.key], Path):
                made_bytes += os.path.getsize(str(found[group.key]))
            if progress:
                done = sum(1 for g in groups if found[g.key] is not False)
                progress(done, len(groups), made_bytes)


_HINT = "the layer is malformed"


def _publish(group: Group, entries: dict[str, Entry], workdir: Path, where: str) -> Path | None:
    final = cache.entry(KIND, group.key)
    cache.discard(final)  # a corrupt entry (a good one would have been used): out of the way
    with cache.publish(KIND, group.key) as tmp:
        if not entries:
            (tmp / META).write_text(json.dumps({"format": FORMAT, "empty": True}))
        else:
            with tempdirs.workdir("vmbuild-lower-", _staging_root(entries)) as scratch:
                _convert(entries, tmp / IMAGE, scratch, where)
            size = (tmp / IMAGE).stat().st_size
            (tmp / META).write_text(json.dumps({"format": FORMAT, "size": size}))
    return final / IMAGE if entries else None


def _staging_root(entries: dict[str, Entry]) -> Path | None:
    """Where a lower's files are staged for ``mke2fs -d``: in memory (:data:`RAM`) when
    it and free memory have room for them twice over, else TMPDIR (None). They are read
    once and removed: written to a disk they cost that write and a file system's
    metadata work per file, which is many times tmpfs's (bench/bench_root.py)."""
    need = sum(e.info.size + 4096 for e in entries.values()) + (64 << 20)
    try:
        shm = os.statvfs(RAM)
        memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
    if shm.f_bavail * shm.f_frsize < 2 * need or memory < 2 * need:
        return None
    return RAM if os.access(RAM, os.W_OK | os.X_OK) else None


def _convert(entries: dict[str, Entry], image: Path, workdir: Path, where: str) -> None:
    """``entries`` as an ext4 image at ``image`` (see :mod:`vmbuild.vm.ext4image`)."""

    def write(stager: ext4image.Stager) -> None:
        write_entries(entries, cast(tarfile.TarFile, stager), None)

    try:
        ext4image.convert(write, image, workdir)
    except (tarfile.TarError, EOFError) as exc:
        raise ImageError(f"{where}: not a readable tar ({exc})", _HINT) from exc
    except ext4image.Unconvertible as exc:
        raise ImageError(f"{where} cannot be made into a lower image: {exc}", _HINT) from exc
