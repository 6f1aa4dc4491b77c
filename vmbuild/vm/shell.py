"""A shell in the build VM's failed tree: ``vmbuild build --shell-on-failure``.

When runAsRoot fails, the guest's overlay (the base's layers under the new layer) is
still mounted at ``/scratch/merged``. :func:`failure_shell` opens an interactive shell
there over SSH with a pseudo-terminal, chrooted and namespaced as the script was (the
same /dev, /proc, /sys and guest tools under /.vmbuild), and bridges it to this
terminal in raw mode. When the shell exits, the caller tears the VM down as usual.

Whether to open it is :data:`SHELL_ON_FAILURE`, a context variable the command line
sets (:func:`enabled`), so no builder or spec carries a flag only a terminal user wants.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import select
import shlex
import shutil
import sys
import termios
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vmbuild.vm.machine import EXEC

if TYPE_CHECKING:
    import paramiko

    from vmbuild.vm.machine import Machine

SHELL_ON_FAILURE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "shell_on_failure", default=False
)
MERGED = "/scratch/merged"
PROMPT = r"[vmbuild: failed runAsRoot] \w# "

# The chroot runAsRoot ran in, remade for an interactive bash (see guest/root-step).
SHELL = r"""
M=%(merged)s
for d in dev proc sys .vmbuild; do
    [ -e "$M/$d" ] || [ -L "$M/$d" ] || mkdir "$M/$d"
done
exec unshare --mount --pid --ipc --uts --fork /bin/sh -eu -c '
    M=$1
    mount --make-rprivate /
    mount --bind /dev "$M/dev"
    mount -t proc proc "$M/proc"
    mount -t sysfs sysfs "$M/sys"
    mount --bind / "$M/.vmbuild"
    mount -o remount,bind,ro "$M/.vmbuild"
    export HOME=/root TERM="${TERM:-vt100}" PS1="$2"
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.vmbuild/step/bin
    cd "$M"
    exec chroot "$M" /.vmbuild/step/bin/bash --norc --noprofile -i
' shell "$M" '%(prompt)s'
"""


@contextlib.contextmanager
def enabled(on: bool = True) -> Iterator[None]:
    """Open a shell in the failed tree when a runAsRoot step fails inside this block."""
    token = SHELL_ON_FAILURE.set(on)
    try:
        yield
    finally:
        SHELL_ON_FAILURE.reset(token)


def failure_shell(vm: Machine, status: int) -> None:
    """The interactive shell in the failed tree, until it exits (if one is wanted)."""
    if not SHELL_ON_FAILURE.get():
        return
    err = sys.stderr
    err.write(
        f"vmbuild: runAsRoot failed with status {status}; opening a shell in the failed "
        "tree, chrooted as the script was.\r\n"
        "vmbuild: leave with `exit` or Ctrl-D; the build VM is then torn down and the "
        "build fails as usual.\r\n"
    )
    err.flush()
    size = shutil.get_terminal_size()
    chan = vm.open_session()
    try:
        chan.get_pty(os.environ.get("TERM", "vt100"), size.columns, size.lines)
        script = SHELL % {"merged": MERGED, "prompt": PROMPT}
        chan.exec_command(EXEC + shlex.join(["sh", "-c", script]))
        _bridge(chan, sys.stdin.fileno(), sys.stdout.fileno())
    finally:
        chan.close()
    err.write("vmbuild: left the failure shell; tearing the build VM down\n")
    err.flush()


def _bridge(chan: paramiko.Channel, stdin: int, stdout: int) -> None:
    """Copy the terminal's keys to ``chan`` and its output back, the terminal raw."""
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if saved is not None:
        tty.setraw(stdin)
    sources: list[Any] = [chan, stdin]
    try:
        while True:
            ready, _, _ = select.select(sources, [], [], 0.5)
            if chan in ready:
                data = chan.recv(65536)
                if not data:
                    break
                os.write(stdout, data)
            if stdin in ready:
                keys = os.read(stdin, 4096)
                if keys:
                    chan.sendall(keys)
                else:  # end of input: the shell sees it too
                    chan.shutdown_write()
                    sources = [chan]
            if chan.exit_status_ready() and not chan.recv_ready():
                break
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
