"""The vmbuild command line, and the one error boundary.

Each command lives in its own module that exposes ``register(subparsers)``; the
subparser it adds sets ``func`` to a callable taking the parsed arguments and returning
an exit status. :data:`COMMANDS` says which module owns which command, so a command
imports only its own module (``vmbuild stream`` starts without paramiko or QEMU's
libraries); ``--help``, no command or an unknown one import them all. Errors a user
can act on (:class:`VmbuildError`) become one line on stderr with a hint and the
error's exit code, and a failed step's last 20 lines of output under it, each on its
own line (``--debug``: all of them); anything else is a bug and shows its traceback.
``--debug`` shows tracebacks and every subprocess command, ``-v`` the commands only,
``-q`` hides progress. The global options work before or after the command
(``cli.common``); an unknown option prints that command's usage. SIGINT, SIGTERM and
SIGHUP clean up alike and exit with 128 + the signal's number (:mod:`vmbuild.signals`);
a full disk on the host is one line too.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from vmbuild import signals
from vmbuild.cli.common import (
    GLOBAL_OPTIONS,
    HelpFormatter,
    add_globals,
    all_parsers,
    main_epilog,
    package_version,
)
from vmbuild.errors import VmbuildError, last_lines

# Command -> the module that registers it (see module docstring). A new command adds
# its line here and a module with register(subparsers).
COMMANDS = {
    "build": "vmbuild.cli.build",
    "stream": "vmbuild.cli.build",
    "inspect": "vmbuild.cli.inspect",
    "load": "vmbuild.cli.load",
    "lock": "vmbuild.cli.lock",
    "sbom": "vmbuild.cli.sbom",
    "prefetch": "vmbuild.cli.registry",
    "push": "vmbuild.cli.registry",
    "vm": "vmbuild.cli.vm",
    "doctor": "vmbuild.cli.vm",
    "version": "vmbuild.cli.version",
    "completion": "vmbuild.cli.completion",
    "cache": "vmbuild.cli.cache",
}
# commands that need every command's parser (completion is generated from it)
NEEDS_ALL = {"completion"}
# errno values of a local file system that is full or read-only
LOCAL_IO_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, if it comes before any option but the global ones."""
    for arg in argv:
        if arg not in GLOBAL_OPTIONS:
            return arg if arg in COMMANDS and arg not in NEEDS_ALL else None
    return None


class _Version(argparse.Action):
    """``--version``, the installed version looked up only when asked (importlib.metadata
    costs more than a re-push's HTTP request)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            help="show vmbuild's version and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"vmbuild {package_version()}")  # on stdout, as argparse's version action
        parser.exit()


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmbuild",
        description="Build reproducible Docker/OCI images the way nixpkgs dockerTools does, "
        "from a TOML spec, without Nix, a daemon or root; root steps run in a throwaway VM.",
        epilog=main_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for _path, command_parser in all_parsers(parser)[1:]:
        add_globals(command_parser, top=False)
        command_parser.set_defaults(_parser=command_parser)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed; an unknown option is refused with its command's usage."""
    command = command_of(argv)
    parser = build_parser((COMMANDS[command],) if command else COMMAND_MODULES)
    first = next((a for a in argv if a not in GLOBAL_OPTIONS), None)
    if first is not None and not first.startswith("-") and first not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(first, sorted(COMMANDS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        parser.error(f"unknown command {first!r}{hint} (vmbuild --help lists them)")
    args, extra = parser.parse_known_args(argv)
    if extra:
        owner: argparse.ArgumentParser = getattr(args, "_parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    args._root_parser = parser
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    level = logging.INFO
    if args.debug or args.verbose:
        level = logging.DEBUG
    elif args.quiet:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.getLogger("qemu").setLevel(logging.WARNING)
    warnings.showwarning = _show_warning
    try:
        with signals.handlers():
            status: int = args.func(args)
        return status
    except VmbuildError as exc:
        if args.debug:  # the traceback, then the same line and exit status as without
            import traceback

            traceback.print_exc()
        hint = f" -- {exc.hint}" if exc.hint else ""
        print(f"vmbuild: error: {exc.message}{hint}", file=sys.stderr)
        _show_output(exc.output.splitlines() if args.debug else last_lines(exc.output))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"vmbuild: {signals.describe(exc)}", file=sys.stderr)
        return signals.exit_status(exc)
    except BrokenPipeError:
        return 141
    except OSError as exc:
        if exc.errno not in LOCAL_IO_ERRORS or args.debug:
            raise
        print(f"vmbuild: error: {_no_space(exc)}", file=sys.stderr)
        return 1


def _show_output(lines: list[str]) -> None:
    """A failed step's output under its error, each line on its own, indented."""
    for line in lines:
        print(f"  {line}", file=sys.stderr)


def _no_space(exc: OSError) -> str:
    """One line for a full (or read-only) host file system, naming the file when Python
    knows it."""
    import tempfile

    from vmbuild.cache import cache_dir

    what = exc.strerror or "No space left on device"
    where = f" writing {exc.filename}" if exc.filename else ""
    return (
        f"{what}{where} -- free space in the temporary directory ({tempfile.gettempdir()}, "
        f"TMPDIR), the cache ({cache_dir()}, VMBUILD_CACHE_DIR) or --out's directory"
    )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning is one line, like an error (no source file and line of vmbuild's)."""
    print(f"vmbuild: warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
