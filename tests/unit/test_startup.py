"""`vmbuild stream` starts quickly: it imports only the module that owns the command."""

from __future__ import annotations

import argparse
import subprocess
import sys

from vmbuild.__main__ import COMMANDS, build_parser, command_of


def commands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_command_table_names_every_command() -> None:
    assert commands(build_parser()) == set(COMMANDS)
    for command, module in COMMANDS.items():
        assert command in commands(build_parser((module,)))


def test_command_of() -> None:
    assert command_of(["--debug", "stream", "x"]) == "stream"
    assert command_of(["--help"]) is None
    assert command_of(["nosuch"]) is None
    assert command_of([]) is None


def test_stream_does_not_import_the_vm_or_registry_code() -> None:
    code = (
        "import sys\n"
        "from vmbuild.__main__ import main\n"
        "try:\n"
        "    main(['stream', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paramiko'"
        " or m.startswith(('vmbuild.vm', 'vmbuild.registry'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
