"""runAsRoot and extraCommands in the build VM are bash scripts, as in nixpkgs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import error_and_output, vmbuild_cli
from tests.support.rootsteps import build, umoci_rootfs

pytestmark = [pytest.mark.vm, pytest.mark.tools]

# More than one argument may hold (128 KiB): the script is never passed as one.
LONG_COMMENT = "# " + "x" * 200_000

BASH_SPEC = f"""
name = "bashy"
tag = "t"
runAsRoot = '''
#!/bin/sh
arr=(one two three)
[[ ${{#arr[@]}} -eq 3 && ${{arr[1]}} == t* ]]
printf '%s' $'tab\\there' > /tabbed
echo "$0 ${{arr[2]}} $(pwd)" > /facts
{LONG_COMMENT}
if command -v bash >/dev/null && [ ! -e /bin/bash ] && [ ! -e /usr/bin/bash ]; then
    echo guest > /bash-is
fi
'''
extraCommands = '''
#!/bin/sh
declare -A seen=([key]=value)
[[ ${{seen[key]}} == value ]]
echo "$0 ${{seen[key]}}" > extra-facts
'''
"""


def test_bash_syntax_in_an_image_without_bash(tmp_path: Path) -> None:
    """FROM scratch: arrays, [[ ]], $'...' and a #!/bin/sh line, in both scripts."""
    out = build(tmp_path, BASH_SPEC)
    rootfs = umoci_rootfs(tmp_path, out)
    assert (rootfs / "tabbed").read_text() == "tab\there"
    assert (rootfs / "facts").read_text() == "runAsRoot three /\n"
    assert (rootfs / "bash-is").read_text() == "guest\n"  # the image has none; ours ran it
    assert (rootfs / "extra-facts").read_text() == "extraCommands value\n"
    assert sorted(p.name for p in rootfs.iterdir()) == [
        "bash-is",
        "extra-facts",
        "facts",
        "tabbed",
    ]


@pytest.mark.parametrize(
    ("spec", "status", "message", "output"),
    [
        (
            'runAsRoot = "echo before; false; echo after"',
            1,
            "runAsRoot failed with status 1 -- ",
            ["before"],
        ),
        (
            'runAsRoot = "#!/bin/sh\\necho before\\nno-such-command"',
            127,
            "runAsRoot failed with status 127 -- ",
            ["before", "runAsRoot: line 3: no-such-command: command not found"],
        ),
        (
            'runAsRoot = "true"\n'
            'extraCommands = "arr=(a b)\\necho ${arr[1]}\\n(exit 3)\\necho after"',
            3,
            "extraCommands failed with status 3 -- ",
            ["b"],
        ),
    ],
    ids=["false", "command-not-found", "extraCommands"],
)
def test_a_failing_script_is_named_without_internals(
    tmp_path: Path, spec: str, status: int, message: str, output: list[str]
) -> None:
    path = tmp_path / "fail.toml"
    path.write_text(f'name = "f"\n{spec}\n')
    out = tmp_path / "f.tar"
    proc = vmbuild_cli("build", path, "--out", out)
    assert proc.returncode == 4, proc.stderr  # a failed user script; its status is in the line
    error, shown = error_and_output(proc.stderr)
    assert error.startswith(f"vmbuild: error: {message}"), proc.stderr
    assert shown == output, proc.stderr  # under the error, each line on its own
    assert set(output) <= set(proc.stderr.splitlines()), proc.stderr  # streamed as it ran
    assert "after" not in proc.stderr  # set -e
    for internal in ("vmbuild-step", "/.vmbuild", "/step/", "/dev/fd"):
        assert internal not in proc.stderr, proc.stderr
    assert not out.exists()
