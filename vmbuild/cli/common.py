"""What every command shares: how a command's parser is made (help, examples), the
global options, and the help's EXIT STATUS and ENVIRONMENT sections.

A command module calls :func:`add_command` for each command it registers; the global
options (``--debug``, ``-q``, ``-v``) are added to every parser by :func:`add_globals`,
so they are accepted before or after the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from vmbuild.errors import EXIT_CODES

# Every environment variable vmbuild reads, and what for.
ENVIRONMENT = {
    "VMBUILD_CACHE_DIR": "the cache (kernels, pulled blobs, ELF scans); "
    "default $XDG_CACHE_HOME/vmbuild",
    "XDG_CACHE_HOME": "the cache's parent when VMBUILD_CACHE_DIR is unset; default ~/.cache",
    "VMBUILD_GUEST_KERNEL": "cloud: boot Debian's packaged cloud kernel instead of building one",
    "VMBUILD_LINUX_SOURCE": "a Linux source tarball or tree to build the guest kernel from",
    "VMBUILD_TIMEOUT": "default for build --timeout (seconds a build VM may run; 0: no "
    "limit); default 3600",
    "VMBUILD_STEP_CACHE": "where runAsRoot results are cached; default $VMBUILD_CACHE_DIR/steps",
    "VMBUILD_CACHE_REPO": "a remote cache (docker://HOST/REPO) read and written when build "
    "has no --cache-from/--cache-to and the spec no cacheFrom/cacheTo",
    "TMPDIR": "where scratch trees and VM disks go (vmbuild-* directories)",
    "https_proxy, http_proxy, no_proxy": "proxies for registries (upper case works too)",
    "REGISTRY_AUTH_FILE": "registry credentials (containers-auth.json), read first",
    "DOCKER_CONFIG": "directory of Docker's config.json (credentials, credential helpers)",
}


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vmbuild")
    except PackageNotFoundError:
        return "unknown"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's examples and tables as written."""


def _table(title: str, rows: dict[Any, str]) -> str:
    width = max(len(str(k)) for k in rows)
    lines = [f"  {k!s:<{width}}  {v}" for k, v in rows.items()]
    return f"{title}:\n" + "\n".join(lines)


def main_epilog() -> str:
    return "\n\n".join(
        [
            "examples:\n  vmbuild build image.toml            # writes ./NAME-TAG.tar.gz\n"
            "  vmbuild build image.toml -o - | podman load\n"
            "  vmbuild inspect redis-7.tar.gz --json",
            "run `vmbuild COMMAND --help` for a command's options and examples.",
            _table("exit status", EXIT_CODES),
            _table("environment", ENVIRONMENT),
        ]
    )


def add_command(
    sub: Any,
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """A parser for command ``name``: its one-line help, a description (default the
    help) and an epilog of examples."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    return parser


# The options every command takes: their names and help.
GLOBALS = (
    (("--debug",), "show tracebacks, every command run and whole step outputs"),
    (("-q", "--quiet"), "print only results, warnings and errors (no progress)"),
    (("-v", "--verbose"), "say what vmbuild does, with every command it runs"),
)
GLOBAL_OPTIONS = tuple(name for names, _ in GLOBALS for name in names)


def add_globals(parser: argparse.ArgumentParser, top: bool) -> None:
    """``--debug``, ``-q`` and ``-v`` on ``parser``; on a command's parser they keep the
    value given before the command unless given again (``SUPPRESS`` defaults)."""
    taken = parser._option_string_actions
    default: dict[str, Any] = {"default": False} if top else {"default": argparse.SUPPRESS}
    for names, help in GLOBALS:
        if not any(name in taken for name in names):
            parser.add_argument(*names, action="store_true", help=help, **default)


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``parser``'s commands by name (a parser with no commands has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def all_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``parser`` and every command parser under it, each with its command path."""
    found = [(path, parser)]
    for name, child in subparsers_of(parser).items():
        found.extend(all_parsers(child, (*path, name)))
    return found
