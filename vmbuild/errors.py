"""The errors vmbuild raises on purpose.

Every error a user can cause or fix is a :class:`VmbuildError`: it carries a one-line
message (what is wrong) and a hint (how to fix it). The CLI's error boundary in
``__main__`` prints exactly those and exits with ``exit_code``; nothing else is shown
unless ``--debug`` is given.

Each error's type carries its exit status (:data:`EXIT_CODES` lists them for --help
and the README): 2 a bad spec or command line, 3 a missing host tool, 4 a failed user
script, 5 a registry or network error, 1 anything else; 130 is Ctrl-C (``signals``).
"""

from __future__ import annotations

# how many lines of a failed step's output the error shows (``--debug``: all of them)
TAIL_LINES = 20


def last_lines(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` non-blank lines of ``text`` (a program's output), for an error."""
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()][-n:]


def printable(text: str) -> str:
    """``text`` a server or an image chose, safe to print: control characters (a
    terminal's escape sequences among them) become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


class VmbuildError(Exception):
    """A failure the user can act on: ``message`` says what, ``hint`` says how to fix it."""

    exit_code = 1
    # what a failed step printed (as much as was kept): the CLI shows its last lines
    output = ""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class SpecError(VmbuildError):
    """The spec (TOML or API arguments) is malformed or inconsistent."""

    exit_code = 2


class ImageError(VmbuildError):
    """An input image archive or layer is missing, corrupt or unsafe."""


class ToolMissing(VmbuildError):
    """A host program vmbuild needs is not installed."""

    exit_code = 3


class VmError(VmbuildError):
    """The build VM failed: boot, timeout, out of memory, disk full, panic."""


class StepFailed(VmbuildError):
    """A user script (runAsRoot, extraCommands, fakeRootCommands) exited non-zero.

    The exit status is 4 whatever the script's; its own ``status`` is in the message.
    ``output`` is what it printed: the CLI shows the last :data:`TAIL_LINES` lines of it
    under the error, each on its own line (``--debug``: all of it).
    """

    exit_code = 4

    def __init__(self, message: str, status: int, hint: str | None = None, output: str = ""):
        super().__init__(message, hint)
        self.status = status
        self.output = output


class ToolFailed(StepFailed):
    """A host program vmbuild runs itself (not a user script) failed or timed out."""

    exit_code = 1


class RegistryError(VmbuildError):
    """A registry refused a request, could not be reached, or sent something that does
    not verify."""

    exit_code = 5


# exit status -> what it means (printed by --help and in the README)
EXIT_CODES = {
    0: "success",
    1: "any other failure (a bad input image, the build VM, a host tool failing)",
    2: "a bad spec or command line",
    3: "a host tool vmbuild needs is missing",
    4: "a user script failed (runAsRoot, extraCommands, fakeRootCommands); "
    "its own status is in the message",
    5: "a registry or network error",
    130: "interrupted (Ctrl-C); 143 for SIGTERM, 129 for SIGHUP",
}
