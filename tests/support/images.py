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


def layer_tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """A layer tar from (name, kind, payload): kind f=file (bytes), d=dir, l=symlink (target),
    h=hard link (target), o=opaque marker, w=whiteout of payload name."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1
            if kind == "f":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
                ti.mode = 0o644
                tar.addfile(ti, io.BytesIO(data))
                continue
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(payload)
            elif kind == "o":
                ti.name = name + "/.wh..wh..opq"
            elif kind == "w":
                ti.name = name
            tar.addfile(ti)
    return path


def image_from_layers(out: Path, layer_paths: list[Path], name: str = "layers:1") -> Path:
    """A docker-archive holding ``layer_paths`` as its layers (bottom first)."""
    from vmbuild.oci.archive import write_docker_archive
    from vmbuild.oci.digest import of_file
    from vmbuild.oci.image import BlobRef, Image, Layer

    layers = [Layer(of_file(p), BlobRef.whole(p), "none") for p in layer_paths]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    repo, tag = name.split(":")
    with open(out, "wb") as f:
        write_docker_archive(Image(repo, tag, config, layers), f, 1)
    return out
