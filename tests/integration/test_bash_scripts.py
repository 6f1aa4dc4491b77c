"""extraCommands and fakeRootCommands on the host are bash scripts named as themselves."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli

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
    ("spec", "status", "message"),
    [
        (
            'extraCommands = "echo before\\nno-such-command\\necho after"',
            127,
            "extraCommands failed with status 127: before / "
            "extraCommands: line 2: no-such-command: command not found",
        ),
        (
            'function = "buildLayeredImage"\nfakeRootCommands = "#!/bin/sh\\nno-such-command"',
            127,
            "fakeRootCommands failed with status 127: "
            "fakeRootCommands: line 2: no-such-command: command not found",
        ),
    ],
    ids=["extraCommands", "fakeRootCommands"],
)
def test_a_failing_script_is_named_as_itself(
    tmp_path: Path, spec: str, status: int, message: str
) -> None:
    path = tmp_path / "fail.toml"
    path.write_text(f'name = "f"\n{spec}\n')
    out = tmp_path / "f.tar"
    proc = vmbuild_cli("build", path, "--out", out, "--compress", "none")
    assert proc.returncode == status, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"vmbuild: error: {message} -- "), line
    assert "/dev/fd" not in line and "bash:" not in line and "after" not in line
    assert not out.exists()
