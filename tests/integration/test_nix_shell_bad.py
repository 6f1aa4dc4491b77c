"""Bad buildNixShellImage specs through the CLI: one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli

CASES = [
    ("", "drv is required and must be a table"),
    ('drv = "hello"', "drv must be a table"),
    ('command = "a"\nrun = "b"\n[drv]\nname = "x"', "command and run are both given"),
    ('[drv]\nname = "x"\nsrc = "./missing.tar.gz"', "does not exist"),
    ('[drv]\nname = "x"\nsrc = "./spec.toml"', "is neither a tarball nor a directory"),
    ('[drv]\nname = "x"\nbuildInputs = ["/nonexistent/tool"]', "buildInputs[0]"),
    ('[drv]\nname = "x"\nbuildInputs = [{ path = "./spec.toml", closure = true }]', "ELF"),
    ('shell = "./spec.toml"\n[drv]\nname = "x"', "is not an executable file"),
]


@pytest.mark.parametrize("function", ["buildNixShellImage", "streamNixShellImage"])
@pytest.mark.parametrize(("text", "message"), CASES)
def test_bad_spec_is_one_line(tmp_path: Path, function: str, text: str, message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'function = "{function}"\n{text}\n')
    if function == "streamNixShellImage":
        proc = vmbuild_cli("stream", spec)
        assert proc.stdout == ""
    else:
        proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar.gz")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error:"), proc.stderr
    assert message in lines[0] and " -- " in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]
