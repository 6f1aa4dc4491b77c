"""Crafted layer stacks where names go through symlinks and non-directories, and odd
whiteouts; and the trees that ``umoci unpack`` and an exported tar hold, to compare."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from vmbuild.oci.archive import write_oci_layout
from vmbuild.oci.digest import of_file
from vmbuild.oci.image import BlobRef, Image, Layer

# (name, kind, payload[, attributes]): kind f=file, d=dir, l=symlink, h=hard link,
# c=0:0 character device; attributes set mode, uid, gid
Member = tuple[Any, ...]
Stack = list[list[Member]]
# name -> (kind, mode, uid, gid, link target or sha256 of the content)
Tree = dict[str, tuple[str, int, int, int, str]]
NOOP_ID = 2**32 - 1  # in umoci's owner record: the owner is not changed (0 here)

LOWER_D: list[Member] = [
    ("d", "d", ""),
    ("d/p", "d", "", {"mode": 0o711, "uid": 7, "gid": 8}),
    ("d/p/old", "f", "O"),
    ("d/q", "f", "Q"),
]

CASES: dict[str, Stack] = {
    "abs_link_then_child": [[("a", "l", "/tmp")], [("a/x", "f", "X")]],
    "abs_link_then_dir_and_child": [[("a", "l", "/tmp")], [("a", "d", ""), ("a/x", "f", "X")]],
    "rel_link_then_child": [
        [("b", "d", "", {"mode": 0o750, "uid": 5, "gid": 6}), ("b/y", "f", "Y"), ("a", "l", "b")],
        [("a/x", "f", "X"), ("a/sub/z", "f", "Z", {"uid": 9, "mode": 0o600})],
    ],
    "dotdot_link": [
        [("t", "d", ""), ("t/z", "d", ""), ("d", "d", ""), ("d/a", "l", "../t/z")],
        [("d/a/x", "f", "X")],
    ],
    "link_chain": [[("c", "d", ""), ("b", "l", "/c"), ("a", "l", "b")], [("a/x", "f", "X")]],
    "link_to_root": [[("r", "l", "/")], [("r/x", "f", "X")]],
    # a symlink stored with mode 0644 (Python's tarfile writes them so): Linux shows 0777
    "link_stored_0644": [[("a", "f", "A"), ("b", "l", "a", {"mode": 0o644})]],
    "dangling_link": [[("a", "l", "nothere/deeper")], [("a/x", "f", "X")]],
    "child_then_link_one_layer": [[("a", "d", ""), ("a/x", "f", "X"), ("a", "l", "/tmp")]],
    "link_then_child_one_layer": [[("a", "l", "/tmp"), ("a/x", "f", "X")]],
    "dir_over_link": [
        [("t", "d", ""), ("t/y", "f", "Y"), ("a", "l", "t")],
        [("a", "d", ""), ("a/x", "f", "X")],
    ],
    "file_then_dir": [[("a", "f", "F")], [("a", "d", ""), ("a/x", "f", "X")]],
    "dir_then_file": [
        [("v", "d", ""), ("v/lib", "d", ""), ("v/lib/d", "f", "D")],
        [("v", "f", "now a file")],
    ],
    "hard_link_through_link": [[("a", "l", "/tmp")], [("a/x", "f", "X"), ("h", "h", "a/x")]],
    "whiteout_through_link": [
        [("c", "d", ""), ("c/y", "f", "Y"), ("c/z", "f", "Z"), ("l", "l", "c")],
        [("l/.wh.y", "f", "")],
    ],
    "opaque_through_link": [
        [("c", "d", ""), ("c/y", "f", "Y"), ("l", "l", "c")],
        [("l/.wh..wh..opq", "f", ""), ("l/new", "f", "N")],
    ],
    "opaque_keeps_own_members": [LOWER_D, [("d/p/new", "f", "N"), ("d/.wh..wh..opq", "f", "")]],
    "whiteout_after_own_child": [LOWER_D, [("d/p/new", "f", "N"), ("d/.wh.p", "f", "")]],
    "whiteout_before_own_child": [LOWER_D, [("d/.wh.p", "f", ""), ("d/p/new", "f", "N")]],
    "opaque_then_dir_again": [LOWER_D, [("d/.wh..wh..opq", "f", ""), ("d/p", "d", "")]],
    "whiteout_same_layer": [
        [("b", "f", "B")],
        [("b2", "f", "N"), (".wh.b2", "f", ""), (".wh.b", "f", ""), ("b", "f", "new b")],
    ],
    "whiteout_odd_names": [
        [("...", "f", "dots"), ("c", "d", ""), ("c/y", "f", "Y")],
        [(".wh....", "f", ""), (".wh..wh.x", "f", ""), ("c/.wh.y/z", "f", "Z")],
    ],
    "whiteout_without_target": [
        [("b", "f", "B")],
        [
            ("zz/.wh.foo", "f", ""),
            ("b/.wh.foo", "f", ""),
            ("q/.wh..wh..opq", "f", ""),
            (".wh.nothing", "f", ""),
        ],
    ],
    "duplicate_member": [[("f", "f", "one"), ("f", "f", "two")]],
    "dir_over_dir_keeps_contents": [
        [("d", "d", "", {"mode": 0o700}), ("d/x", "f", "X")],
        [("d", "d", "", {"mode": 0o755, "uid": 3, "gid": 3})],
    ],
}

# a root-level opaque marker: hides every lower file, keeps the layer's own
ROOT_OPAQUE: Stack = [
    [
        ("junk", "d", ""),
        ("junk/f", "f", "J"),
        ("top", "f", "T"),
        ("keep", "d", "", {"mode": 0o700}),
        ("keep/old", "f", "O"),
        ("again", "d", "", {"mode": 0o700}),
        ("again/old", "f", "O"),
    ],
    [("fresh", "f", "F"), ("keep/new", "f", "N"), (".wh..wh..opq", "f", ""), ("again/x", "f", "X")],
]

LOWER_A: list[Member] = [("a", "d", ""), ("a/x", "f", "X")]
# name -> (stack, what the one-line error says, whether umoci refuses it too)
REFUSED: dict[str, tuple[Stack, str, bool]] = {
    "file_then_child": (
        [[("a", "f", "F")], [("a/x", "f", "X")]],
        "a/x is below a, which is not a directory",
        True,
    ),
    "file_then_child_one_layer": (
        [[("a", "f", "F"), ("a/x", "f", "X")]],
        "which is not a directory",
        True,
    ),
    "link_to_file_then_child": (
        [[("b", "f", "B"), ("a", "l", "/b")], [("a/x", "f", "X")]],
        "a/x is below b, which is not a directory",
        True,
    ),
    "symlink_loop": (
        [[("l1", "l", "l2"), ("l2", "l", "l1")], [("l1/x", "f", "X")]],
        "too many levels of symbolic links",
        True,
    ),
    "empty_whiteout": ([LOWER_A, [("a/.wh.", "f", "")]], "names no file", True),
    "whiteout_of_dot": ([LOWER_A, [("a/.wh..", "f", "")]], "names no file", True),
    "root_whiteout_of_dot": ([LOWER_A, [(".wh..", "f", "")]], "names no file", True),
    "whiteout_of_dotdot": ([LOWER_A, [("a/.wh...", "f", "")]], "climbs out with '..'", True),
    "root_whiteout_of_dotdot": ([LOWER_A, [(".wh...", "f", "")]], "climbs out with '..'", True),
    "overlay_whiteout_device": ([[("dev", "c", "")]], "0:0 character device", False),
    "hard_link_to_lower_file": (
        [[("f", "f", "old")], [("h", "h", "f"), ("f", "f", "new")]],
        "has no target in its layer",
        False,
    ),
}


def write_layer(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, *rest in members:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1, 0o755 if kind == "d" else 0o644
            data = None
            if kind == "f":
                raw = payload.encode()
                ti.size, data = len(raw), io.BytesIO(raw)
            elif kind == "d":
                ti.type = tarfile.DIRTYPE
            elif kind == "l":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, payload, 0o777
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            elif kind == "c":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 0, 0
            for key, value in (rest[0] if rest else {}).items():
                setattr(ti, key, value)
            tar.addfile(ti, data)
    return path


def oci_layout(directory: Path, stack: Stack) -> Path:
    """An OCI layout (tag ``t``) with one plain layer per entry of ``stack``, bottom first."""
    directory.mkdir(parents=True)
    paths = [write_layer(directory / f"layer{i}.tar", m) for i, m in enumerate(stack)]
    layers = [Layer(of_file(p), BlobRef.whole(p), "none") for p in paths]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    layout = directory / "oci"
    write_oci_layout(Image("crafted", "t", config, layers), layout)
    return layout


def prefixed(prefix: str, stack: Stack) -> Stack:
    """``stack`` moved into directory ``prefix`` (absolute link targets too)."""
    out: Stack = []
    for layer in stack:
        moved: list[Member] = []
        for name, kind, payload, *rest in layer:
            if kind == "h" or (kind == "l" and payload.startswith("/")):
                payload = f"{'/' if kind == 'l' else ''}{prefix}/{payload.lstrip('/')}"
            moved.append((f"{prefix}/{name}", kind, payload, *rest))
        out.append(moved)
    return out


def combined() -> Stack:
    """Every case of CASES in a directory of its own, above the root-level opaque case."""
    stack = [list(layer) for layer in ROOT_OPAQUE]
    for name, case in CASES.items():
        for i, layer in enumerate(prefixed(name, case)):
            while len(stack) < len(ROOT_OPAQUE) + i + 1:
                stack.append([])
            stack[len(ROOT_OPAQUE) + i] += layer
    return stack


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _varints(data: bytes) -> dict[int, int]:
    """The varint fields of a small protobuf message (umoci's rootless owner record)."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _varint(data, i)
        value, i = _varint(data, i)
        fields[key >> 3] = value
    return fields


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def umoci_unpack(layout: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    """``umoci unpack --rootless`` under umask 022 (the mode of the directories it makes)."""
    script = 'umask 022 && exec umoci unpack --rootless --image "$1:t" "$2"'
    return subprocess.run(
        ["sh", "-c", script, "sh", str(layout), str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )


def rootfs_tree(rootfs: Path) -> Tree:
    """What umoci unpacked; owners from its ``user.rootlesscontainers`` records."""
    out: Tree = {}
    for dirpath, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            uid = gid = 0
            if not stat.S_ISLNK(st.st_mode):
                try:
                    fields = _varints(os.getxattr(p, "user.rootlesscontainers"))
                    uid, gid = (fields.get(k, 0) % NOOP_ID for k in (1, 2))
                except OSError:
                    pass
            if stat.S_ISDIR(st.st_mode):
                entry = ("d", stat.S_IMODE(st.st_mode), uid, gid, "")
            elif stat.S_ISLNK(st.st_mode):
                entry = ("l", 0, uid, gid, os.readlink(p))
            else:
                entry = ("f", stat.S_IMODE(st.st_mode), uid, gid, _sha(p.read_bytes()))
            out[str(p.relative_to(rootfs))] = entry
    return out


def tar_tree(path: Path) -> Tree:
    """What an exported tar holds (a hard link as a file with its target's content)."""
    out: Tree = {}
    with tarfile.open(path) as tar:
        members = {m.name.rstrip("/"): m for m in tar}
        for name, m in members.items():
            if m.isdir():
                out[name] = ("d", m.mode & 0o7777, m.uid, m.gid, "")
            elif m.issym():
                out[name] = ("l", 0, m.uid, m.gid, m.linkname)
            else:
                data = members[m.linkname] if m.islnk() else m
                f = tar.extractfile(data)
                assert f is not None and data.isreg()
                out[name] = ("f", m.mode & 0o7777, m.uid, m.gid, _sha(f.read()))
    return out


def assert_no_member_below_a_non_directory(path: Path) -> None:
    """Every member's parent is in the tar, and a directory."""
    with tarfile.open(path) as tar:
        members = {m.name.rstrip("/"): m for m in tar}
    for name in members:
        parent = os.path.dirname(name)
        assert not parent or members[parent].isdir(), f"{name} is below non-directory {parent}"
