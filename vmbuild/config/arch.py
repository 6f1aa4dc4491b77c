"""The ``architecture`` argument: Go's names (GOARCH), as image configs spell them.

The kernel's names for the same machines (``x86_64``, ``aarch64``, ...) are corrected
with a warning. An image for another architecture than the host's cannot hold the host's
programs (closures, the helpers that bring a program), and its runAsRoot cannot run in
the build VM, which runs the host's architecture only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from vmbuild.errors import SpecError
from vmbuild.oci.image import host_goarch

GOARCHES = frozenset(
    {
        "386",
        "amd64",
        "arm",
        "arm64",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "ppc64",
        "ppc64le",
        "riscv64",
        "s390x",
        "wasm",
    }
)
# the kernel's (uname -m) and Debian's spellings of the same architectures
ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
    "armv7l": "arm",
    "ppc64el": "ppc64le",
    "loongarch64": "loong64",
}
# helpers that bring a host program (and its shared libraries)
PROGRAM_HELPERS = frozenset({"usrBinEnv", "binSh"})


def parse_architecture(value: str | None, where: str) -> str:
    """The GOARCH name for ``value`` (the host's when None)."""
    if value is None:
        return host_goarch()
    if value in GOARCHES:
        return value
    if value in ALIASES:
        warnings.warn(
            f'{where}: architecture "{value}" is spelled "{ALIASES[value]}" in images; '
            f'using "{ALIASES[value]}"',
            UserWarning,
            2,
        )
        return ALIASES[value]
    raise SpecError(
        f"{where}: architecture {value!r} is not a Go architecture name",
        f"use one of {', '.join(sorted(GOARCHES))} (the host's is {host_goarch()})",
    )


def check_host_programs(architecture: str, programs: Iterable[str], where: str) -> None:
    """Refuse host programs (named for the message) in an image for another architecture."""
    host = host_goarch()
    program = next(iter(programs), None) if architecture != host else None
    if program is not None:
        raise SpecError(
            f"{where}: {program} is a host program for {host}, but architecture is {architecture}",
            f"drop it, or build for {host}",
        )


def check_run_as_root(architecture: str, where: str) -> None:
    host = host_goarch()
    if architecture != host:
        raise SpecError(
            f"{where}: runAsRoot cannot run for architecture {architecture}: the build VM "
            f"runs {host} only",
            f"build for {host}, or drop runAsRoot",
        )
