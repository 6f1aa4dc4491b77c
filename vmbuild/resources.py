"""The files vmbuild ships beside its code: the guest's and the kernel recipe's.

They live at the repository's top level, ``guest/`` (the guest's init, its helpers, the
root-step script and the shadowSetup script) and ``kernels/`` (the kconfig fragment and
its README). ``pyproject.toml`` maps them to the packages ``vmbuild._guest`` and
``vmbuild._kernels``, so a wheel carries them as package data and an editable install
resolves them to the checkout; this module is the only place that reads them.
"""

from __future__ import annotations

import importlib.resources

from vmbuild.errors import VmbuildError

GUEST = "vmbuild._guest"
KERNELS = "vmbuild._kernels"
SHADOW_SETUP_FILE = "shadow-setup.sh"


def _read(package: str, name: str) -> bytes:
    try:
        return importlib.resources.files(package).joinpath(name).read_bytes()
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
