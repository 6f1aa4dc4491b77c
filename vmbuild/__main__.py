"""The vmbuild command line, and the one error boundary.

Each command lives in its own module that exposes ``register(subparsers)``; the
subparser it adds sets ``func`` to a callable taking the parsed arguments and returning
an exit status. Errors a user can act on (:class:`VmbuildError`) become one line on
stderr with a hint and the error's exit code; anything else is a bug and shows its
traceback. ``--debug`` shows tracebacks and every subprocess command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vmbuild.errors import VmbuildError

# Modules that each add one or more subcommands (see module docstring).
COMMAND_MODULES = (
    "vmbuild.cli_build",
    "vmbuild.vm.cli",
    "vmbuild.registry.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmbuild",
        description="Build reproducible Docker/OCI images without a daemon and without root.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and commands run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.getLogger("qemu").setLevel(logging.WARNING)
    try:
        status: int = args.func(args)
        return status
    except VmbuildError as exc:
        if args.debug:
            raise
        hint = f" -- {exc.hint}" if exc.hint else ""
        print(f"vmbuild: error: {exc.message}{hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vmbuild: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
