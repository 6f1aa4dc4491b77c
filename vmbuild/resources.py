"""The files vmbuild ships beside its code: the guest's, the kernel recipe's, nix-shell's.

The first two live at the repository's top level, ``guest/`` (the guest's init, its helpers, the
root-step script and the shadowSetup script) and ``kernels/`` (the kconfig fragment and
its README). ``pyproject.toml`` maps them to the packages ``vmbuild._guest`` and
``vmbuild._kernels``, so a wheel carries them as package data and an editable install
resolves them to the checkout. ``vmbuild/nixshell/`` (the nix-shell image's setup file,
rc file and buildDerivation) is package data of ``vmbuild`` itself. This module is the
only place that reads any of them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from vmbuild.errors import VmbuildError

GUEST = "vmbuild._guest"
NIXSHELL = "nixshell"  # vmbuild/nixshell/: the files a nix-shell image holds
KERNELS = "vmbuild._kernels"
SHADOW_SETUP_FILE = "shadow-setup.sh"


def _read(package: str, name: str) -> bytes:
    """The file from the package's directory (pip installs packages as directories);
    importlib.resources, and its imports, only for anything else."""
    try:
        for where in importlib.import_module(package).__path__:
            path = Path(where, name)
            if path.is_file():
                return path.read_bytes()
        from importlib import resources

        return resources.files(package).joinpath(name).read_bytes()
    except ModuleNotFoundError:
        raise VmbuildError(
            f"{package} is missing: vmbuild is imported from a checkout pip has not installed",
            "install it: pip install -e . (or pip install .)",
        ) from None


def guest_file(name: str) -> bytes:
    """A file of ``guest/`` (``init``, ``exec.sh``, ``root-step``, ...), as shipped."""
    return _read(GUEST, name)


def kernel_file(name: str) -> bytes:
    """A file of ``kernels/`` (``guest.config``, ``README``), as shipped."""
    return _read(KERNELS, name)


def shadow_setup() -> str:
    """The manual's shadowSetup: a POSIX sh fragment (``guest/shadow-setup.sh``).

    It runs under the guest's busybox sh or the image's own shell and creates
    /etc/passwd, /etc/shadow, /etc/group, /etc/gshadow, /etc/pam.d/other and
    /etc/login.defs only where they do not exist yet. In a runAsRoot script the guest's
    useradd/groupadd are on PATH after it.
    """
    return guest_file(SHADOW_SETUP_FILE).decode()


def nixshell_file(name: str) -> str:
    """A file of ``vmbuild/nixshell/`` (``setup.sh``, ``rcfile.sh``, ``buildDerivation.sh``):
    what buildNixShellImage puts in the image, as shipped."""
    return _read(f"vmbuild.{NIXSHELL}", name).decode()
