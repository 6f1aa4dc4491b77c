"""extraCommands and fakeRootCommands on the host are bash scripts named as themselves."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import error_and_output, vmbuild_cli

# More than one argument may hold (128 KiB): the script is never passed as one.
LONG_COMMENT = "# " + "x" * 200_000

EXTRA = f"""
extraCommands = '''
#!/bin/sh
arr=(one two three)
[[ ${{#arr[@]}} -eq 3 && ${{arr[1]}} == t* ]]
printf '%s' $'tab\\there' > tabbed
{LONG_COMMENT}
echo "$0 ${{arr[2]}}" > facts
'''
"""


def files_of(archive: Path) -> dict[str, bytes]:
    """Every regular file in the image's layers, by name (later layers win)."""
    out: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for path in manifest[0]["Layers"]:
            with tarfile.open(fileobj=tar.extractfile(path)) as layer:
                for m in layer:
                    if m.isfile():
                        out[m.name.removeprefix("./")] = layer.extractfile(m).read()  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("function", ["buildImage", "buildLayeredImage"])
def test_extra_commands_with_bash_syntax(tmp_path: Path, function: str) -> None:
    spec = tmp_path / "x.toml"
    spec.write_text(f'function = "{function}"\nname = "x"\ntag = "t"\n{EXTRA}')
    out = tmp_path / "x.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    files = files_of(out)
    assert files["tabbed"] == b"tab\there"
    assert files["facts"] == b"extraCommands three\n"


@pytest.mark.parametrize(
    ("spec", "status", "message", "output"),
    [
        (
            'extraCommands = "echo before\\nno-such-command\\necho after"',
            127,
            "extraCommands failed with status 127",
            ["before", "extraCommands: line 2: no-such-command: command not found"],
        ),
        (
            'function = "buildLayeredImage"\nfakeRootCommands = "#!/bin/sh\\nno-such-command"',
            127,
            "fakeRootCommands failed with status 127",
            ["fakeRootCommands: line 2: no-such-command: command not found"],
        ),
    ],
    ids=["extraCommands", "fakeRootCommands"],
)
def test_a_failing_script_is_named_as_itself(
    tmp_path: Path, spec: str, status: int, message: str, output: list[str]
) -> None:
    path = tmp_path / "fail.toml"
    path.write_text(f'name = "f"\n{spec}\n')
    out = tmp_path / "f.tar"
    proc = vmbuild_cli("build", path, "--out", out, "--compress", "none")
    assert proc.returncode == 4, proc.stderr  # a failed user script; its status is in the line
    line, shown = error_and_output(proc.stderr)
    assert line.startswith(f"vmbuild: error: {message} -- "), line
    assert shown == output, proc.stderr
    assert "/dev/fd" not in proc.stderr and "bash:" not in proc.stderr
    assert "after" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("function", ["buildImage", "buildLayeredImage"])
def test_a_failing_step_shows_its_last_20_lines_and_all_with_debug(
    tmp_path: Path, function: str
) -> None:
    path = tmp_path / "fail.toml"
    script = 'for i in $(seq 30); do echo "out $i"; echo "err $i" >&2; done; exit 5'
    path.write_text(f'function = "{function}"\nname = "f"\nextraCommands = {json.dumps(script)}\n')
    out = tmp_path / "f.tar.gz"
    every = [f"{kind} {i}" for i in range(1, 31) for kind in ("out", "err")]
    proc = vmbuild_cli("build", path, "--out", out)
    assert proc.returncode == 4, proc.stderr
    line, shown = error_and_output(proc.stderr)
    assert line.startswith("vmbuild: error: extraCommands failed with status 5 -- "), line
    assert shown == every[-20:]
    assert proc.stderr.splitlines()[:60] == every  # streamed as it ran, like runAsRoot's
    debug = vmbuild_cli("--debug", "build", path, "--out", out)
    assert debug.returncode != 0
    assert [f"  {ln}" for ln in every] == [
        ln for ln in debug.stderr.splitlines() if ln.startswith("  out ") or ln.startswith("  err ")
    ]
    assert not out.exists()
