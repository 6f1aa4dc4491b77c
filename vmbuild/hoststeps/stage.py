"""A layer's root as a real directory, for scripts that work on it (extraCommands).

:func:`materialize` copies a :class:`Tree` into a fresh directory (files copied, never
linked to their sources, so a script cannot change the inputs; hard links within the
tree kept). :func:`run_script` runs a user script there with bash, as the invoking
user, its output (stdout and stderr, in order) passed on to vmbuild's stderr as it
comes, as runAsRoot's is; a failure carries the output for the error. bash reads the script
from an anonymous file (no size limit on one argument) and runs it with ``eval``, its
``$0`` being the script's name, so its messages read ``extraCommands: line 3: ...``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from vmbuild.errors import SpecError, StepFailed
from vmbuild.oci.layer import with_parents
from vmbuild.oci.tree import BlobSource, Tree
from vmbuild.run import Tee, spawn, which


def materialize(tree: Tree, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    links: dict[tuple[int, int], Path] = {}
    dirs: list[tuple[Path, int]] = []
    for name, synthetic in with_parents(tree.sorted_names()):
        target = dest / name
        if synthetic:
            if name not in tree.entries:
                target.mkdir()
                dirs.append((target, 0o755))
            continue
        src = tree.entries[name]
        st = src.stat()
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            target.mkdir(exist_ok=True)
            dirs.append((target, stat.S_IMODE(mode)))
            os.chmod(target, 0o700 | stat.S_IMODE(mode))
        elif stat.S_ISLNK(mode):
            link = src.linkname if isinstance(src, BlobSource) else os.readlink(src.host)
            os.symlink(link, target)
        elif stat.S_ISREG(mode) and isinstance(src, BlobSource):
            _copy_range(src, target, links)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], target)
                continue
            shutil.copyfile(src.host, target, follow_symlinks=True)
            os.chmod(target, stat.S_IMODE(mode))
            if st.st_nlink > 1:
                links[key] = target
        else:
            raise SpecError(
                f"{src.host} is a device, fifo or socket; it cannot be staged for extraCommands "
                "without root",
                "create it in runAsRoot instead",
            )
    for path, mode in reversed(dirs):
        os.chmod(path, mode)


def _copy_range(src: BlobSource, target: Path, links: dict[tuple[int, int], Path]) -> None:
    """A package member's bytes (a range of its payload) as the file ``target``."""
    key = (hash(src.link_group), src.offset)
    if src.link_group and key in links:
        os.link(links[key], target)
        return
    with open(src.host, "rb") as f, open(target, "wb") as out:
        f.seek(src.offset)
        left = src.size
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise SpecError(f"{src.host} is shorter than planned", "clear the package cache")
            out.write(chunk)
            left -= len(chunk)
    os.chmod(target, stat.S_IMODE(src.mode))
    if src.link_group:
        links[key] = target


def bash_argv(bash: str, fd: int, name: str) -> list[str]:
    """``bash -e`` running the script readable at descriptor ``fd``, as ``$0`` = ``name``.

    The descriptor is closed before the script runs; a leading ``#!`` line is a comment.
    """
    return [bash, "-e", "-c", f'eval "$(< /dev/fd/{fd})" {fd}<&-', name]


def run_script(script: str, cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
    """Run ``script`` with ``bash -e`` and umask 022 in ``cwd``; StepFailed names ``what``."""
    bash = which("bash", "bash")
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    full_env.update({k: v for k, v in os.environ.items() if k in ("LANG", "TMPDIR", "USER")})
    full_env.update(env or {})
    fd = os.memfd_create(what)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(script.encode())
        tee = Tee(sys.stderr.buffer)
        with spawn(
            bash_argv(bash, fd, what),
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            umask=0o022,  # as in a Nix build: the caller's umask must not change the layer
            pass_fds=(fd,),
        ) as proc:
            assert proc.stdout is not None
            with proc.stdout:
                tee.drain(proc.stdout)
            status = proc.wait()
    finally:
        os.close(fd)
    if status != 0:
        raise StepFailed(
            f"{what} failed with status {status}",
            status,
            "fix the script; it runs with bash -e in the new layer's root",
            output=tee.text(),
        )
