"""Which modules a command loads: run in a fresh interpreter, so nothing the test
process already imported counts."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Mapping


def modules_loaded(code: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The names in ``sys.modules`` after a new Python has run ``code`` (a SystemExit
    from it, as ``--help`` raises, ends the code, not the check)."""
    script = (
        "import sys\n"
        f"try:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env if env is not None else os.environ),
    ).stdout
    loaded: list[str] = ast.literal_eval(out.strip().splitlines()[-1])
    return loaded


def loaded_of(
    code: str, prefixes: tuple[str, ...], env: Mapping[str, str] | None = None
) -> list[str]:
    """The modules under any of ``prefixes`` that ``code`` loads (see
    :func:`modules_loaded`)."""
    return [m for m in modules_loaded(code, env) if m.startswith(prefixes)]
