"""Running the vmbuild command line from tests: the repository root and ``vmbuild_cli``.

``vmbuild_cli`` runs the command in this process (``vmbuild.__main__.main``), set up
as a fresh ``python -m vmbuild`` would find it: its own environment, working
directory, standard streams (temporary files at the fd level, so the programs it
starts write into them too), context variables, warning filters and logging, and
the status ``sys.exit`` would give. A start of the interpreter costs about 0.3 s of
CPU; the fast lane makes hundreds of runs. ``child=True``, or :data:`IN_CHILD` (set
for the VM tests, or for all with ``VMBUILD_TESTS_IN_CHILD=1``), runs a real
``python -m vmbuild`` instead: for what only a process shows (signals, exit on a
closed pipe, start-up imports) and for the VM tests, where a boot costs far more
than a start.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

REPO = Path(__file__).resolve().parent.parent.parent
IN_CHILD = os.environ.get("VMBUILD_TESTS_IN_CHILD") == "1"  # every run a child process


def vmbuild_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    child: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``vmbuild ARGS`` and capture its output as text (see the module's text)."""
    argv = [str(a) for a in args]
    if not (child or IN_CHILD):
        return run_in_process(argv, env or {}, cwd or REPO)
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "vmbuild", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=900,
        check=False,
    )


def run_in_process(
    argv: Sequence[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    from vmbuild.__main__ import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with _fresh_process(env, cwd, out, err):
            try:
                code: object = contextvars.Context().run(main, argv)
            except SystemExit as exc:  # argparse: --help, usage errors
                code = exc.code
            except Exception:  # what the interpreter does with an uncaught one
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        status = code if isinstance(code, int) else (0 if code is None else 1)
        return subprocess.CompletedProcess(["vmbuild", *argv], status, _text(out), _text(err))


def _text_stream(fd: int) -> io.TextIOWrapper:
    """A text stream on ``fd`` that does not close it; output goes straight to the fd, so
    text and ``.buffer`` writes stay in order."""
    raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw),
        errors="backslashreplace",
        line_buffering=fd == 2,
        write_through=True,
    )


def _text(f: BinaryIO) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _fresh_process(env: dict[str, str], cwd: Path, out: BinaryIO, err: BinaryIO) -> Iterator[None]:
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
    root = logging.getLogger()
    saved_log = root.handlers[:], root.level
    saved_tmp = tempfile.tempdir
    try:
        os.environ.update(env)
        os.chdir(cwd)
        tempfile.tempdir = None  # found again from TMPDIR
        with open(os.devnull, "rb") as null:
            os.dup2(null.fileno(), 0)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdin, sys.stdout, sys.stderr = _text_stream(0), _text_stream(1), _text_stream(2)
        root.handlers = []
        with warnings.catch_warnings():
            warnings.resetwarnings()  # a fresh interpreter's filters, not pytest's "error"
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
                warnings.simplefilter("ignore", quiet)
            warnings.simplefilter("ignore", ResourceWarning)
            yield
    finally:
        ours = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        for stream in ours:
            with contextlib.suppress(Exception):
                stream.close()  # flushed; the fds stay open (closefd=False)
        for fd, copy in zip((0, 1, 2), saved_fds, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        root.handlers, root.level = saved_log[0], saved_log[1]
        tempfile.tempdir = saved_tmp
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def write_spec(directory: Path, text: str, name: str = "spec.toml") -> Path:
    """Write a spec file ``name`` holding ``text`` in ``directory``; its path."""
    spec = directory / name
    spec.write_text(text)
    return spec


def build_ok(spec: Path, out: Path, *args: str) -> None:
    """``vmbuild build SPEC --out OUT ARGS``, which must succeed."""
    proc = vmbuild_cli("build", spec, "--out", out, *args)
    assert proc.returncode == 0, proc.stderr


def error_and_output(stderr: str) -> tuple[str, list[str]]:
    """The one ``vmbuild: error:`` line in ``stderr`` and the failed step's output lines
    the CLI shows under it (indented by two spaces), without the indent."""
    lines = stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("vmbuild: error:")]
    assert len(starts) == 1, stderr
    shown = []
    for ln in lines[starts[0] + 1 :]:
        assert ln.startswith("  "), stderr
        shown.append(ln[2:])
    return lines[starts[0]], shown
