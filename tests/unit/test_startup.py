"""`vmbuild stream` starts quickly: it imports only the module that owns the command."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.support.imports import modules_loaded
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
    code = "from vmbuild.__main__ import main\nmain(['stream', '--help'])\n"
    loaded = modules_loaded(code)
    assert [m for m in loaded if m.split(".")[0] == "paramiko"] == []
    assert [m for m in loaded if m.startswith(("vmbuild.vm", "vmbuild.registry"))] == []


# What a step-cache hit must not load: the VM's machinery, the registry client, the
# Debian code, the SBOM writers (tests below seed the entry without a VM).
NOT_ON_A_HIT = (
    "paramiko",
    "urllib3",
    "spdx_tools",
    "cyclonedx",
    "debian",
    "vmbuild.vm.machine",
    "vmbuild.vm.qemu",
    "vmbuild.vm.lowers",
    "vmbuild.vm.channel",
    "vmbuild.registry",
    "vmbuild.remotecache",
    "vmbuild.debian",
    "vmbuild.sbom",
    "vmbuild.hoststeps",
    # what only a zstd layer, a misspelt spec key or an OCI output needs
    "zstandard",
    "isal",
    "difflib",
    "vmbuild.oci.referrers",
)

SEED = """
import hashlib, io, sys, tarfile
from vmbuild.vm import steps
from vmbuild.__main__ import main

def fake_vm(step, base, content, has_content, workdir, plain, mtime):
    with tarfile.open(plain, "w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("data")
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1
        tar.addfile(ti)
    return "sha256:" + hashlib.sha256(plain.read_bytes()).hexdigest()

steps._build_in_vm = fake_vm  # the seeding build boots no VM either
sys.exit(main(sys.argv[1:]))
"""

LOADED = """
import sys
from vmbuild.__main__ import main
code = main(sys.argv[1:])
print(sorted(sys.modules))
sys.exit(code)
"""


def test_a_step_cache_hit_loads_no_vm_registry_debian_or_sbom_code(tmp_path: Path) -> None:
    from tests.support.images import image_from_layers, layer_tar

    base = image_from_layers(tmp_path / "base.tar", [layer_tar(tmp_path / "l.tar", [
        ("etc", "d", ""), ("etc/hostname", "f", "base\n")])])  # fmt: skip
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "hit"\ntag = "t"\nfromImage = "{base}"\nrunAsRoot = "mkdir /data"\n')
    env = {
        **os.environ,
        "VMBUILD_STEP_CACHE": str(tmp_path / "steps"),
        "VMBUILD_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("VMBUILD_CACHE_REPO", None)
    argv = ["build", str(spec), "--out", str(tmp_path / "out.tar"), "--compress", "none"]
    seeded = subprocess.run(
        [sys.executable, "-c", SEED, *argv], capture_output=True, text=True, env=env
    )
    assert seeded.returncode == 0, seeded.stderr
    first = (tmp_path / "out.tar").read_bytes()
    hit = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, env=env
    )
    assert hit.returncode == 0, hit.stderr
    assert "comes from the step cache" in hit.stderr
    assert (tmp_path / "out.tar").read_bytes() == first
    loaded = ast.literal_eval(hit.stdout.strip().splitlines()[-1])
    assert "vmbuild.vm.steps" in loaded  # the hit went through the runAsRoot code
    bad = [m for m in loaded if m.startswith(NOT_ON_A_HIT)]
    assert not bad, f"a step-cache hit imported {bad}"


def test_build_knows_the_remote_cache_variable() -> None:
    from vmbuild.cli.build import CACHE_REPO_ENV
    from vmbuild.remotecache.options import ENV

    assert CACHE_REPO_ENV == ENV


def test_a_layered_build_without_sbom_loads_no_sbom_vm_or_registry_code(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("hi\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'function = "buildLayeredImage"\nname = "l"\ntag = "t"\n'
        f'contents = ["{tmp_path / "root"}"]\n'
    )
    env = {**os.environ, "VMBUILD_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VMBUILD_CACHE_REPO", None)
    argv = ["build", str(spec), "--out", str(tmp_path / "out.tar"), "--compress", "none"]
    run = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    loaded = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert "vmbuild.builders.layered" in loaded
    not_here = tuple(m for m in NOT_ON_A_HIT if m != "vmbuild.hoststeps")  # (its last layer)
    bad = [m for m in loaded if m.startswith(not_here)]
    assert not bad, f"a layered build imported {bad}"
