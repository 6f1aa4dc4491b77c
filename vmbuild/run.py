"""The one subprocess wrapper.

Every external program vmbuild starts goes through :func:`run` (wait for it) or
:func:`spawn` (a context manager around a running child). Neither ever uses a shell;
with debug logging on, each command is logged as ``+ cmd``; on any exception while a
child runs, the child is terminated (then killed) before the exception propagates.
``die_with_parent=True`` also ties the child's life to vmbuild's, for the
case no exception handler sees (SIGKILL): see :func:`_die_with_parent`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from vmbuild import signals
from vmbuild.errors import ToolFailed, ToolMissing

log = logging.getLogger("vmbuild")

StrPath = str | os.PathLike[str]


def which(program: str, package: str) -> str:
    """Absolute path of ``program``, or ToolMissing naming the Debian package to install."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise ToolMissing(
            f"{program} is not installed",
            f"install it: apt-get install {package} (or run scripts/setup)",
        )
    return found


def _log_cmd(argv: Sequence[StrPath]) -> None:
    log.debug("+ %s", shlex.join(os.fspath(a) for a in argv))


def run(
    argv: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    capture: bool = False,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    check: bool = True,
    timeout: float | None = None,
    what: str | None = None,
    umask: int = -1,
    die_with_parent: bool = False,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion.

    ``capture`` collects stdout and stderr. With ``check`` a non-zero exit raises
    :class:`ToolFailed` naming ``what`` (default: the program) with the tail of its
    stderr when captured. ``die_with_parent`` as for :func:`spawn`; ``pass_fds`` are
    descriptors the child inherits (at the same numbers).
    """
    _log_cmd(argv)
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            stdout=subprocess.PIPE if capture else stdout,
            stderr=subprocess.PIPE if capture else stderr,
            timeout=timeout,
            check=False,
            umask=umask,
            preexec_fn=_die_with_parent() if die_with_parent else None,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{args[0]} is not installed", "run scripts/setup") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{what or Path(args[0]).name} timed out after {timeout} s", 124) from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
        detail = ": " + " / ".join(tail) if tail else ""
        raise ToolFailed(
            f"{what or Path(args[0]).name} exited with status {proc.returncode}{detail}",
            proc.returncode,
            output_tail="\n".join(tail),
        )
    return proc


def terminate(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """Stop ``proc``: SIGTERM, wait up to ``grace`` seconds, then SIGKILL and reap."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` after which the child gets SIGKILL when this process dies.

    Linux sends the signal when the *thread* that forked the child ends, so spawn from
    a thread that outlives the child (vmbuild spawns QEMU from the thread that uses the
    Machine, which ends it first). If this process died before the child set the
    signal up, the child's parent is already someone else and it exits at once.
    """
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@contextlib.contextmanager
def spawn(
    argv: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    pass_fds: Sequence[int] = (),
    start_new_session: bool = False,
    die_with_parent: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` and yield the Popen; on exit (normal or not) make sure it is gone.

    ``die_with_parent``: the child is killed by the kernel if vmbuild dies (Linux).
    """
    _log_cmd(argv)
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            start_new_session=start_new_session,
            preexec_fn=_die_with_parent() if die_with_parent else None,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{args[0]} is not installed", "run scripts/setup") from exc
    try:
        yield proc
    finally:
        with signals.deferred():  # a SIGTERM now must not leave the child running
            terminate(proc)
