"""The installed ``vmbuild`` command's entry point ([project.scripts] in pyproject.toml).

It does what ``python -m vmbuild`` does (see the top of :mod:`vmbuild.__main__`): a
re-push of an unchanged image to a registry on this machine is answered before the
command line's machinery is imported (:mod:`vmbuild.registry.repushfast`); everything
else, and every doubt, is :func:`vmbuild.__main__.main`.
"""

from __future__ import annotations

import sys


def main() -> int:
    if "push" in sys.argv[1:3]:
        from vmbuild.registry.repushfast import main as repush

        status = repush(sys.argv[1:])
        if status is not None:
            return status
    from vmbuild.__main__ import exit_after
    from vmbuild.__main__ import main as command_line

    exit_after(command_line())
