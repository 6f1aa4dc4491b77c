"""Spec mistakes get a hint that fixes them, through the real CLI (issue 17, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli, write_spec

LAYERED = 'function = "buildLayeredImage"\nname = "x"\n'


@pytest.mark.parametrize(
    ("spec", "message", "hint"),
    [
        (
            'name = "x"\ncopyToRot = ["r"]\n',
            "unknown argument 'copyToRot'",
            "did you mean copyToRoot",
        ),
        ('name = "x"\ncopyToRoot = ["binsh"]\n', "binsh does not exist", 'helper "binSh"'),
        (LAYERED + 'contents = ["fakenss"]\n', "does not exist", 'helper "fakeNss"'),
        (
            'name = "x"\ncopyToRoot = "pkgs.redis"\n',
            "pkgs.redis does not exist",
            "looks like a Nix package; there is no Nix store here: items are host paths",
        ),
        (
            LAYERED + 'contents = ["pkgs.redis"]\n',
            "does not exist",
            'e.g. { path = "/usr/bin/redis-server", closure = true }',
        ),
        (
            'name = "x"\nfromImage = "debian:12"\n',
            "does not exist",
            "vmbuild prefetch, then a pullImage spec",
        ),
        (LAYERED + 'runAsRoot = "true"\n', "runAsRoot", "fakeRootCommands"),
        (
            'name = "x"\ncreated = 2024-01-01T00:00:00Z\n',
            "got a TOML date",
            'write it as a string: created = "2024-01-01T00:00:00Z"',
        ),
        (
            'name = "x"\ncreated = { at = 1 }\n',
            "created must be a string, got a table { at }",
            'write it as a string: created = "2024-01-01T00:00:00Z"',
        ),
        ('name = "x"\ntag = 5\n', "tag must be a string, got an integer 5", 'tag = "..."'),
    ],
)
def test_hints(tmp_path: Path, spec: str, message: str, hint: str) -> None:
    proc = vmbuild_cli("build", write_spec(tmp_path, spec), "-o", tmp_path / "o.tar")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    text, _, got_hint = line.partition(" -- ")
    assert message in text and hint in got_hint, line
    assert "{'" not in line and "<class" not in line  # never a Python repr


def test_a_plain_host_file_in_layered_contents_warns_where_it_lands(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, LAYERED + 'contents = ["/usr/bin/bash"]\n')
    proc = vmbuild_cli("build", spec, "-o", tmp_path / "o.tar")
    assert proc.returncode == 0, proc.stderr
    warning = next(ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: warning:"))
    assert "it lands at /bash" in warning
    assert '{ path = "/usr/bin/bash", closure = true }' in warning
