"""The customisation layer: the contents' trees, then extraCommands, then fakeRootCommands.

With no commands the contents' trees are packed straight from the host (owner 0:0).
With commands, the trees are copied into a scratch root where extraCommands runs as
the invoking user. fakeRootCommands then runs under ``fakeroot -s STATE`` (with
enableFakechroot, also under ``fakechroot chroot ROOT``: ``/`` is the scratch root,
while the host's program directories stay visible so the commands can run host tools),
and the layer is packed by a child Python under ``fakeroot -i STATE``, whose ``lstat``
sees the owners, modes and device nodes the commands set.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vmbuild.errors import StepFailed
from vmbuild.oci.layer import Owner
from vmbuild.oci.tree import Tree, from_roots
from vmbuild.run import run, which
from vmbuild.stage import materialize, run_script

# Host paths fakechroot leaves alone: the commands run the host's programs.
FAKECHROOT_EXCLUDE = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/dev",
    "/proc",
    "/sys",
)


@dataclass(frozen=True)
class Custom:
    """The layer as a tree to pack (``tar`` None) or as a tar already packed under fakeroot."""

    tree: Tree | None
    owner: Owner
    tar: Path | None = None


def _env(root: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    env.update({k: v for k, v in os.environ.items() if k in ("LANG", "TMPDIR", "USER")})
    return env


def _fake_root(script: str, root: Path, state: Path, chroot: bool) -> None:
    fakeroot = which("fakeroot", "fakeroot")
    bash = which("bash", "bash")
    argv: list[str] = [fakeroot, "-s", str(state), "--"]
    env = _env(root)
    if chroot:
        argv += [which("fakechroot", "fakechroot"), which("chroot", "coreutils"), str(root)]
        env["FAKECHROOT_EXCLUDE_PATH"] = ":".join(FAKECHROOT_EXCLUDE)
        env["HOME"] = "/"
    argv += [bash, "-e", "-c", script]
    proc = run(argv, cwd=root, env=env, capture=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-5:]
        raise StepFailed(
            f"fakeRootCommands failed with status {proc.returncode}"
            + (": " + " / ".join(tail) if tail else ""),
            proc.returncode,
            "fix the script; it runs with bash -e under fakeroot in the new layer's root",
            output_tail="\n".join(tail),
        )


def pack_under_fakeroot(root: Path, state: Path, out: Path, mtime: int) -> None:
    """Pack ``root`` to the plain tar ``out`` as fakeroot's ``state`` describes it."""
    fakeroot = which("fakeroot", "fakeroot")
    argv = [
        fakeroot,
        "-i",
        str(state),
        "--",
        sys.executable,
        "-m",
        "vmbuild.layers.fakepack",
        str(root),
        str(out),
        str(mtime),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    run(argv, env=env, capture=True, what="packing the customisation layer under fakeroot")


def customisation(
    tree: Tree,
    extra_commands: str,
    fake_root_commands: str,
    enable_fakechroot: bool,
    workdir: Path,
    mtime: int,
) -> Custom:
    if not extra_commands and not fake_root_commands:
        return Custom(tree, Owner(0, 0))
    root = workdir / "custom-root"
    materialize(tree, root)
    os.chmod(root, 0o755)
    if extra_commands:
        run_script(extra_commands, root, "extraCommands")
    if not fake_root_commands:
        return Custom(from_roots([root], keep_dirlinks=True), Owner(0, 0))
    state = workdir / "fakeroot.state"
    _fake_root(fake_root_commands, root, state, enable_fakechroot)
    out = workdir / "custom.tar"
    pack_under_fakeroot(root, state, out, mtime)
    return Custom(None, Owner(None, None), out)
