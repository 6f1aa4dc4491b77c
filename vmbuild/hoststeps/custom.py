"""The customisation layer: the contents' trees, then extraCommands, then fakeRootCommands.

With no commands the contents' trees are packed straight from the host (owner 0:0).
With commands, the trees are copied into a scratch root where extraCommands runs as
the invoking user. fakeRootCommands then runs under ``fakeroot`` (every file owned by
root to begin with, as the manual says) and, with enableFakechroot, under
``fakechroot chroot ROOT`` too: ``/`` is the scratch root, while the host's program
directories stay visible so the commands can run host tools. The layer is then packed
in the same fakeroot session (:mod:`vmbuild.hoststeps.fakepack`), so ``lstat`` sees the
owners, modes and device nodes the commands set.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from vmbuild.errors import StepFailed, ToolFailed
from vmbuild.hoststeps.stage import materialize, run_script
from vmbuild.oci.layer import Owner
from vmbuild.oci.tree import Tree, from_roots
from vmbuild.run import run, which

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

    def link_targets(self) -> list[str]:
        """The absolute targets of the layer's symlinks, sorted (host paths, perhaps)."""
        found: set[str] = set()
        if self.tar is not None:
            with tarfile.open(self.tar) as tar:
                found = {m.linkname for m in tar if m.issym()}
        elif self.tree is not None:
            for src in self.tree.entries.values():
                host = os.fspath(src.host)
                if os.path.islink(host):
                    found.add(os.readlink(host))
        return sorted(t for t in found if t.startswith("/"))


def _env(root: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    env.update({k: v for k, v in os.environ.items() if k in ("LANG", "TMPDIR", "USER")})
    return env


def _script_argv(script: str, root: Path, chroot: bool) -> tuple[list[str], dict[str, str]]:
    bash = which("bash", "bash")
    env = _env(root)
    argv: list[str] = []
    if chroot:
        argv += [which("fakechroot", "fakechroot"), which("chroot", "coreutils"), str(root)]
        env["FAKECHROOT_EXCLUDE_PATH"] = ":".join(FAKECHROOT_EXCLUDE)
        env["HOME"] = "/"
    return [*argv, bash, "-e", "-c", script, "fakeRootCommands"], env  # $0 names it


def fake_root(script: str, root: Path, workdir: Path, mtime: int, chroot: bool) -> Path:
    """Run ``script`` under one fakeroot session over ``root`` and pack the result.

    The session's program is :mod:`vmbuild.hoststeps.fakepack`, which chowns the tree to
    root, runs the script and packs the tree, all seeing the same fake ownership; one
    session, because saving and loading fakeroot's state costs about two seconds.
    """
    argv, env = _script_argv(script, root, chroot)
    job = workdir / "fakeroot-job.json"
    out = workdir / "custom.tar"
    log = workdir / "fakeroot.log"
    status = workdir / "fakeroot.status"
    job.write_text(
        json.dumps(
            {
                "root": str(root),
                "out": str(out),
                "mtime": mtime,
                "argv": argv,
                "env": env,
                "log": str(log),
                "status": str(status),
            }
        )
    )
    fakeroot = which("fakeroot", "fakeroot")
    py_env = dict(os.environ)
    py_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = run(
        [fakeroot, "--", sys.executable, "-m", "vmbuild.hoststeps.fakepack", str(job)],
        env=py_env,
        capture=True,
        check=False,
    )
    code = int(status.read_text()) if status.exists() else None
    if code:
        lines = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise StepFailed(
            f"fakeRootCommands failed with status {code}"
            + (": " + " / ".join(lines) if lines else ""),
            code,
            "fix the script; it runs with bash -e under fakeroot in the new layer's root",
            output_tail="\n".join(lines),
        )
    if proc.returncode != 0 or not out.exists():
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ToolFailed(  # vmbuild's own packing, not the user's script: exit 1
            "packing the customisation layer under fakeroot failed"
            + (": " + " / ".join(tail) if tail else ""),
            proc.returncode or 1,
            "run with --debug for details",
        )
    return out


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
    out = fake_root(fake_root_commands, root, workdir, mtime, enable_fakechroot)
    return Custom(None, Owner(None, None), out)
