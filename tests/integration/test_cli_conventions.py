"""The command line's conventions, through the real CLI: --version, version --json, help
with examples, exit status and environment sections, global options before or after
the command, an unknown option's usage, exit codes by kind, shell completion."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli, write_spec

COMMANDS = (
    "build",
    "stream",
    "inspect",
    "load",
    "lock",
    "sbom",
    "prefetch",
    "push",
    "vm",
    "doctor",
    "version",
)


def test_version() -> None:
    proc = vmbuild_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("vmbuild 0."), proc.stdout


def test_version_json_names_the_kernel_and_tools() -> None:
    proc = vmbuild_cli("version", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["version"] and info["python"]
    assert "built" in info["guestKernel"]
    if info["guestKernel"]["built"]:
        assert info["guestKernel"]["version"]  # the banner read from the cached kernel
    assert info["tools"]["qemu-system-x86_64"].startswith("QEMU emulator version")


def test_top_help_lists_commands_exit_codes_and_environment() -> None:
    proc = vmbuild_cli("--help")
    assert proc.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command} " in proc.stdout, command
    assert "exit status:" in proc.stdout
    for code in ("1", "2", "3", "4", "5", "130"):
        assert f"\n  {code} " in proc.stdout, code
    for variable in (
        "VMBUILD_CACHE_DIR",
        "XDG_CACHE_HOME",
        "VMBUILD_GUEST_KERNEL",
        "VMBUILD_LINUX_SOURCE",
        "https_proxy",
        "REGISTRY_AUTH_FILE",
        "DOCKER_CONFIG",
    ):
        assert variable in proc.stdout, variable


@pytest.mark.parametrize("command", [*COMMANDS, "completion", "vm run"])
def test_every_command_has_examples(command: str) -> None:
    proc = vmbuild_cli(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    if command != "vm":
        examples = proc.stdout.split("\nexamples:\n", 1)[1].splitlines()
        assert 2 <= len(examples) <= 3 and all("vmbuild " in e for e in examples)


def test_every_command_and_option_has_help_text() -> None:
    from vmbuild.__main__ import build_parser
    from vmbuild.cli.common import all_parsers

    missing = [
        f"{' '.join(path)} {action.option_strings or action.dest}"
        for path, parser in all_parsers(build_parser())
        for action in parser._actions
        if not action.help and action.dest not in ("command", "vm_command")
    ]
    assert not missing, missing


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    spec = str(write_spec(tmp_path, 'tag = "x"\n'))
    for argv in (["--debug", "build", spec], ["build", spec, "--debug"]):
        proc = vmbuild_cli(*argv, "-o", tmp_path / "o.tar")
        assert proc.returncode == 2 and "Traceback" in proc.stderr, argv
    good = str(write_spec(tmp_path, 'name = "q"\ntag = "1"\n', "good.toml"))
    for argv in (["-q", "build", good], ["build", good, "--quiet"], ["build", "-v", good]):
        proc = vmbuild_cli(*argv, "-o", tmp_path / "o.tar")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(tmp_path / "o.tar")
        if "-v" in argv:
            assert "+ " in proc.stderr or "built q:1" in proc.stderr
        else:
            assert "built" not in proc.stderr, proc.stderr  # quiet: no progress lines


def test_an_unknown_option_prints_that_commands_usage(tmp_path: Path) -> None:
    proc = vmbuild_cli("build", tmp_path / "s.toml", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: vmbuild build "), proc.stderr
    assert "unrecognized arguments: --bogus" in proc.stderr
    proc = vmbuild_cli("inspect", "--nope", "x")
    assert proc.returncode == 2 and proc.stderr.startswith("usage: vmbuild inspect ")


def test_an_unknown_command_names_the_closest(tmp_path: Path) -> None:
    proc = vmbuild_cli("biuld", tmp_path / "s.toml")
    assert proc.returncode == 2 and "unknown command 'biuld'; did you mean build?" in proc.stderr


def _error(proc: subprocess.CompletedProcess[str]) -> str:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: error: ")]
    assert errors and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_exit_codes_by_kind(tmp_path: Path) -> None:
    """Each kind's status; a few from a real process, to see ``sys.exit`` pass them on
    (vmbuild_cli runs the rest in-process: main's return value)."""
    out = tmp_path / "o.tar"
    # 2: a bad spec, a bad command line
    assert vmbuild_cli("build", write_spec(tmp_path, "bogus = 1\n"), "-o", out).returncode == 2
    assert vmbuild_cli("build", child=True).returncode == 2
    # 3: a missing host tool (no podman or docker on PATH)
    spec = write_spec(tmp_path, 'name = "e"\ntag = "1"\n', "e.toml")
    assert vmbuild_cli("build", spec, "-o", out).returncode == 0
    proc = vmbuild_cli("load", out, env={"PATH": str(tmp_path / "empty")})
    assert proc.returncode == 3 and "neither podman nor docker" in _error(proc)
    # 4: a failed user script, its own status in the message
    failing = write_spec(tmp_path, 'name = "f"\nextraCommands = "exit 9"\n', "f.toml")
    proc = vmbuild_cli("build", failing, "-o", out, child=True)
    assert proc.returncode == 4 and "status 9" in _error(proc)
    fake = write_spec(
        tmp_path, 'function = "buildLayeredImage"\nname = "f"\nfakeRootCommands = "exit 6"\n'
    )
    proc = vmbuild_cli("build", fake, "-o", out)
    assert proc.returncode == 4 and "fakeRootCommands failed with status 6" in _error(proc)
    # 5: a registry that cannot be reached (a closed port on 127.0.0.1)
    proc = vmbuild_cli("push", out, "docker://127.0.0.1:9/x/y:1")
    assert proc.returncode == 5 and "cannot reach" in _error(proc), proc.stderr
    # 1: anything else (an input image that is not one)
    (tmp_path / "junk.tar").write_bytes(b"\0" * 1024)
    proc = vmbuild_cli("inspect", tmp_path / "junk.tar", child=True)
    assert proc.returncode == 1, proc.stderr


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 'name = "c"\nextraCommands = "sleep 60"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmbuild", "build", str(spec), "-o", str(tmp_path / "c.tar")],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (tmp_path / "c.tar").exists()


def _complete(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """Call the bash completion function for ``words`` (the last is being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        'COMPREPLY=(); _vmbuild; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    proc = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, check=True, cwd=cwd
    )
    return proc.stdout.split()


def test_bash_completion(tmp_path: Path) -> None:
    proc = vmbuild_cli("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "vmbuild.bash"
    script.write_text(proc.stdout)
    assert _complete(script, "vmbuild", "b") == ["build"]
    assert _complete(script, "vmbuild", "--debug", "ins") == ["inspect"]
    assert "--format" in _complete(script, "vmbuild", "build", "--f")
    assert _complete(script, "vmbuild", "build", "--format", "oci") == ["oci-archive", "oci"]
    assert _complete(script, "vmbuild", "vm", "r") == ["run"]
    assert _complete(script, "vmbuild", "vm", "run", "--acc") == ["--accel"]
    assert _complete(script, "vmbuild", "push", "x", "--cr") == ["--creds"]
    assert _complete(script, "vmbuild", "completion", "") == ["bash", "zsh"]
    (tmp_path / "spec-one.toml").write_text("")
    assert _complete(script, "vmbuild", "build", "spec-", cwd=tmp_path) == ["spec-one.toml"]


# zsh's completion builtins replaced by ones that print what they are offered
ZSH_DRIVER = """
compdef() { }
_describe() { print -l -- "${(@P)4}" }
compadd() { shift; print -l -- "$@" }
_files() { print FILES }
source %s
words=(%s); CURRENT=$#words
_vmbuild
"""


def _zsh_offers(script: Path, *words: str) -> list[str]:
    quoted = " ".join(f"'{w}'" for w in words)
    proc = subprocess.run(
        ["zsh", "-f", "-c", ZSH_DRIVER % (script, quoted)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


def test_zsh_completion(tmp_path: Path) -> None:
    proc = vmbuild_cli("completion", "zsh")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#compdef vmbuild\n")
    script = tmp_path / "_vmbuild"
    script.write_text(proc.stdout)
    subprocess.run(["zsh", "-n", str(script)], check=True)
    assert "build:build the image a spec describes" in _zsh_offers(script, "vmbuild", "b")
    offered = _zsh_offers(script, "vmbuild", "build", "--f")
    assert any(line.startswith("--format:docker-archive") for line in offered), offered
    assert _zsh_offers(script, "vmbuild", "build", "--format", "o") == [
        "docker-archive",
        "oci-archive",
        "oci",
    ]
    assert _zsh_offers(script, "vmbuild", "vm", "")[0].startswith("run:boot a fresh guest")
    assert _zsh_offers(script, "vmbuild", "build", "x", "--out", "") == ["FILES"]
