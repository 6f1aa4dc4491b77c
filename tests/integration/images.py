"""Builders of test inputs: trees with every kind of entry, multi-image archives."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path


def rich_tree(root: Path) -> Path:
    """A tree with modes, a hard link pair, symlinks, an empty dir, an xattr, deep names."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    os.chmod(root / "bin" / "tool", 0o755)
    (root / "etc").mkdir()
    (root / "etc" / "secret").write_text("s3cret\n")
    os.chmod(root / "etc" / "secret", 0o600)
    (root / "etc" / "app.conf").write_text("key=value\n")
    os.link(root / "etc" / "app.conf", root / "etc" / "app.conf.link")
    os.symlink("../etc/app.conf", root / "bin" / "conf")
    os.symlink("/etc/app.conf", root / "bin" / "abs-conf")
    (root / "empty").mkdir()
    deep = root / "usr" / "share" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / ("f" * 90)).write_text("long name\n")
    (root / "setuid").write_text("x")
    os.chmod(root / "setuid", 0o4755)
    os.setxattr(root / "bin" / "tool", "user.note", b"kept")
    return root


def multi_image_archive(path: Path, images: list[tuple[Path, str]]) -> None:
    """Merge single-image docker-archives (plain tars) into one archive with several tags."""
    manifests = []
    seen: set[str] = set()
    with tarfile.open(path, "w") as out:
        for archive, ref in images:
            with tarfile.open(archive) as tar:
                entry = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
                entry["RepoTags"] = [ref]
                manifests.append(entry)
                for m in tar.getmembers():
                    if m.name in ("manifest.json", "repositories") or m.name in seen:
                        continue
                    seen.add(m.name)
                    out.addfile(m, tar.extractfile(m) if m.isreg() else None)
        data = json.dumps(manifests).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
