"""The image config's original bytes, for a push that keeps the config digest (the
image ID). The archive reader gives the config parsed; this finds the member (or the
spooled copy, or the layout file) whose JSON is that config. When none is found, the
caller writes the config in canonical form instead."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_CONFIG = 4 << 20


def _candidates(image: Path, workdir: Path) -> Iterator[bytes]:
    if image.is_dir():
        # a layout's own files only: a symlink (to a host file) is never read
        paths = [p for p in sorted(image.rglob("*")) if p.is_file() and not p.is_symlink()]
    else:
        paths = [p for p in sorted(workdir.rglob("*")) if p.is_file()]  # spooled members
        if not paths:  # read in place: look inside the tar
            yield from _tar_candidates(image)
            return
    for path in paths:
        if path.stat().st_size <= MAX_CONFIG:
            yield path.read_bytes()


def _tar_candidates(image: Path) -> Iterator[bytes]:
    try:
        with tarfile.open(image, "r:") as tar:
            for member in tar:
                if member.isreg() and 0 < member.size <= MAX_CONFIG:
                    f = tar.extractfile(member)
                    if f is not None:
                        yield f.read()
    except (tarfile.TarError, OSError):
        return


def find_raw_config(image: Path, workdir: Path, config: dict[str, Any]) -> bytes | None:
    """The bytes in ``image`` that parse to ``config``, or None."""
    for data in _candidates(image, workdir):
        if not data.lstrip().startswith(b"{"):
            continue
        try:
            if json.loads(data) == config:
                return data
        except ValueError:
            continue
    return None
