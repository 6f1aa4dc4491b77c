"""The installed ``vmbuild`` command's entry point ([project.scripts] in pyproject.toml):
what ``python -m vmbuild`` does."""

from __future__ import annotations


def main() -> int:
    from vmbuild.__main__ import exit_after
    from vmbuild.__main__ import main as command_line

    exit_after(command_line())
