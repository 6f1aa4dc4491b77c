"""``vmbuild load ARCHIVE [--to podman|docker]``: an archive, decompressed, into
``podman load`` or ``docker load``.

Debian 12's podman reads only uncompressed archives; vmbuild's default is gzip. The
archive is decompressed as it is piped, so no ``zcat`` and no temporary copy.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO

from vmbuild.cli.common import add_command
from vmbuild.errors import ImageError, SpecError, ToolFailed, ToolMissing
from vmbuild.oci.compress import decompressor, sniff
from vmbuild.oci.layercheck import read_errors
from vmbuild.run import spawn

LOADERS = ("podman", "docker")
CHUNK = 1 << 20


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "load",
        help="load an image archive into podman or docker (decompressing it on the way)",
        description="Pipe ARCHIVE (a docker-archive or OCI archive, plain, .gz or .zst) "
        "decompressed into `podman load` or `docker load`: the one --to names, else "
        "podman if it is installed, else docker.",
        examples=[
            "vmbuild load redis-7.tar.gz",
            "vmbuild load app.tar.zst --to docker",
            "vmbuild build app.toml && vmbuild load app-1.tar.gz && podman run --rm app:1",
        ],
    )
    p.add_argument("archive", type=Path, help="the image archive (docker-archive or OCI archive)")
    p.add_argument(
        "--to",
        choices=LOADERS,
        help="the program to load into (default podman if installed, else docker)",
    )
    p.set_defaults(func=cmd_load)


def loader(wanted: str | None) -> str:
    """The path of ``wanted``, or of the first loader installed."""
    for name in (wanted,) if wanted else LOADERS:
        path = shutil.which(name)
        if path:
            return path
    raise ToolMissing(
        f"{wanted or 'neither podman nor docker'} is not installed",
        "install podman (apt-get install podman) or docker, or pick one with --to",
    )


def _open(path: Path) -> BinaryIO:
    if path.is_dir():
        raise SpecError(
            f"{path} is a directory (an OCI layout?), not an archive",
            f"load it with: skopeo copy oci:{path} containers-storage:NAME:TAG",
        )
    try:
        return open(path, "rb")
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}", "check the path") from exc


def cmd_load(args: argparse.Namespace) -> int:
    program = loader(args.to)
    with _open(args.archive) as raw:
        kind = sniff(raw.read(4))
        raw.seek(0)
        plain = decompressor(raw, kind)
        with spawn([program, "load"], stdin=subprocess.PIPE) as proc:
            assert proc.stdin is not None
            try:
                while chunk := plain.read(CHUNK):
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it stopped reading: its status says why
            except read_errors() as exc:
                raise ImageError(
                    f"{args.archive}: cannot decompress ({kind}): {exc}",
                    "the archive is corrupt or truncated",
                ) from exc
            status = proc.wait()
    if status != 0:
        raise ToolFailed(
            f"{Path(program).name} load exited with status {status}",
            status,
            "its message is above; check the archive with vmbuild inspect",
        )
    sys.stdout.flush()
    return 0
