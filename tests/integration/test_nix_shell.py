"""buildNixShellImage / streamNixShellImage end to end: the CLI builds the image, podman
loads it and buildah runs it (chroot isolation), through a pseudo-terminal where the
shell is interactive."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import build_ok, write_spec
from tests.support.containers import Containers
from tests.support.terminal import run_in_pty

pytestmark = pytest.mark.tools

# A recipe that needs no compiler: make "builds" a script and installs it into $out.
MAKEFILE = """\
all: hello
hello:
\tprintf '#!/bin/sh\\necho "Hello, $(GREETING)!"\\n' > hello
\tchmod +x hello
install:
\tmkdir -p $(out)/bin
\tinstall -m 755 hello $(out)/bin/hello
"""

RECIPE = """\
[drv]
pname = "hello"
version = "1.0"
src = "./{src}"
nativeBuildInputs = [{{ path = "/usr/bin/make", closure = true }}]
makeFlags = ["GREETING=world"]
shellHook = 'echo "{hook}"'
passAsFile = ["notes"]
notes = "kept in a file"
"""


def source(directory: Path, name: str, extra: str = "") -> str:
    tree = directory / f"{name}-src" / "hello-1.0"
    tree.mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "README").write_text(f"hello {extra}\n")
    tarball = directory / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, "hello-1.0")
    return tarball.name


@dataclass
class Built:
    archive: Path  # uncompressed docker-archive
    config: dict[str, Any]


def read_archive(plain: Path) -> Built:
    with tarfile.open(plain) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        config_name = json.load(f)[0]["Config"]
        g = tar.extractfile(config_name)
        assert g is not None
        return Built(plain, json.load(g))


def unpacked(out: Path) -> Built:
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # buildNixShellImage writes a gzip archive
    plain = out.with_suffix("")
    with gzip.open(out) as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return read_archive(plain)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    d = tmp_path_factory.mktemp("nixshell")
    src = source(d, "hello")
    basic = RECIPE.format(src=src, hook="in the shell")
    built = {}
    for name, extra in (
        ("basic", ""),
        ("command", 'command = """echo "command ran: $pname"\n(exit 5)"""\n'),
    ):
        spec = write_spec(d, f'function = "buildNixShellImage"\n{extra}{basic}', f"{name}.toml")
        build_ok(spec, d / f"{name}.tar.gz")
        built[name] = unpacked(d / f"{name}.tar.gz")
    return built


@pytest.fixture
def container(containers: Containers, images: dict[str, Built]) -> Iterator[Any]:
    made: list[str] = []

    def start(name: str) -> str:
        ctr = containers.buildah("from", "-q", f"docker-archive:{images[name].archive}")
        made.append(ctr.stdout.decode().strip())
        return made[-1]

    yield start
    for ctr in made:
        containers.buildah("rm", ctr)


def buildah_run(containers: Containers, ctr: str, *argv: str, tty: bool = False) -> list[str]:
    return [
        "buildah",
        *containers.store,
        "--storage-driver",
        "vfs",
        "run",
        *(["-t"] if tty else []),
        "--isolation",
        "chroot",
        ctr,
        "--",
        *argv,
    ]


def test_the_config_is_nixpkgs_shape(images: dict[str, Built]) -> None:
    config = images["basic"].config["config"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/build"
    assert config["Cmd"] == ["/usr/bin/bash", "--rcfile", "/nix-shell/rc"]
    env = dict(item.split("=", 1) for item in config["Env"])
    for key in ("HOME", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "NIX_BUILD_TOP", "PWD"):
        assert env[key] == "/build"
    assert env["NIX_BUILD_CORES"] == "1" and env["TERM"] == "xterm-256color"
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["PATH"].split(":")[:2] == ["/usr/bin", "/nix-shell/bin"]
    assert env["name"] == "hello-1.0" and env["makeFlags"] == "GREETING=world"
    assert env["nativeBuildInputs"] == "/usr/bin/make" and env["src"].startswith("/nix-shell/")
    assert "notes" not in env and env["notesPath"] == "/nix-shell/files/notes"
    assert env["out"].startswith("/nix/store/") and env["out"].endswith("-hello-1.0")
    command = images["command"].config["config"]
    assert dict(item.split("=", 1) for item in command["Env"])["out"] == env["out"]


def test_build_derivation_builds_the_recipe_as_the_build_user(
    containers: Containers, container: Any
) -> None:
    ctr = container("basic")
    script = (
        'id -u; id -g; id -un; pwd; touch "$HOME/written" && echo home-writable; '
        'cat "$notesPath"; echo; test -x /bin/sh && test -x /usr/bin/env && echo sh-env; '
        'buildDerivation > /build/log && "$out/bin/hello"'
    )
    run = subprocess.run(buildah_run(containers, ctr, "bash", "-c", script), capture_output=True)
    lines = run.stdout.decode().splitlines()
    assert run.returncode == 0, run.stderr.decode() + run.stdout.decode()
    assert lines == [
        "1000",
        "1000",
        "nixbld",
        "/build",
        "home-writable",
        "kept in a file",
        "sh-env",
        "Hello, world!",
    ]
    log = containers.buildah("run", "--isolation", "chroot", ctr, "--", "cat", "/build/log")
    phases = [w.split()[-1] for w in log.stdout.decode().splitlines() if "Running phase" in w]
    assert phases == [
        "unpackPhase",
        "patchPhase",
        "configurePhase",
        "buildPhase",
        "installPhase",
        "fixupPhase",
    ]


def test_the_shell_hook_runs_in_an_interactive_shell(
    containers: Containers, container: Any
) -> None:
    ctr = container("basic")
    argv = buildah_run(containers, ctr, "/usr/bin/bash", "--rcfile", "/nix-shell/rc", tty=True)
    status, out = run_in_pty(argv, b'echo "typed $((6 * 7))"; exit 7\n', after=b"[nix-shell:")
    text = out.decode(errors="replace")
    assert status == 7, text
    assert "in the shell" in text and "typed 42" in text
    assert text.index("in the shell") < text.index("[nix-shell:")


def test_command_runs_after_the_hook_and_gives_its_status(
    containers: Containers, container: Any, images: dict[str, Built]
) -> None:
    ctr = container("command")
    cmd = images["command"].config["config"]["Cmd"]
    status, out = run_in_pty(buildah_run(containers, ctr, *cmd, tty=True))
    text = out.decode(errors="replace")
    assert status == 5, text
    assert text.index("in the shell") < text.index("command ran: hello")
    assert "[nix-shell:" not in text


def test_streamed_run_gives_its_status_and_only_the_top_layer_changes(
    tmp_path: Path, containers: Containers, images: dict[str, Built]
) -> None:
    """A new src, hook and run: the same layers below the customisation layer."""
    src = source(tmp_path, "other", extra="again")
    recipe = RECIPE.format(src=src, hook="another hook")
    spec = write_spec(
        tmp_path,
        f'function = "streamNixShellImage"\nrun = """echo "run ran"\nexit 3"""\n{recipe}',
    )
    stream = subprocess.Popen(
        [sys.executable, "-m", "vmbuild", "stream", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert stream.stdout is not None
    try:
        load = containers.podman("load", stdin=stream.stdout)
    finally:
        stream.stdout.close()
        _, err = stream.communicate(timeout=120)
    assert stream.returncode == 0, err.decode()
    ref = next(w for w in (load.stdout + load.stderr).decode().split() if "hello-1.0-env:" in w)
    info = json.loads(containers.podman("image", "inspect", ref).stdout)[0]
    assert info["Config"]["Cmd"] == ["/usr/bin/bash", "/nix-shell/rc"]
    layers = info["RootFS"]["Layers"]
    basic = images["basic"].config["rootfs"]["diff_ids"]
    assert layers[:-1] == basic[:-1] and layers[-1] != basic[-1]
    ctr = containers.buildah("from", "-q", ref).stdout.decode().strip()
    try:
        run = subprocess.run(
            buildah_run(containers, ctr, *info["Config"]["Cmd"]), capture_output=True
        )
    finally:
        containers.buildah("rm", ctr)
    assert run.returncode == 3, run.stderr.decode()
    assert run.stdout.decode().splitlines() == ["another hook", "run ran"]


# A C program with a configure script of its own: configurePhase passes --prefix=$out.
HELLO_C = """\
#include <stdio.h>
int main(void) { printf("Hello, %s!\\n", GREETING); return 0; }
"""
CONFIGURE = """\
#!/bin/sh
for arg; do case "$arg" in --prefix=*) echo "PREFIX = ${arg#--prefix=}" > config.mk ;; esac; done
"""
C_MAKEFILE = """\
include config.mk
hello: hello.c
\t$(CC) -DGREETING='"$(WHO)"' -o $@ hello.c
check: hello
\t./hello | grep -q Hello
install: hello
\tmkdir -p $(PREFIX)/bin
\tcp hello $(PREFIX)/bin/hello
"""


def test_gcc_and_make_from_debian_build_a_c_program(tmp_path: Path, containers: Containers) -> None:
    tree = tmp_path / "hello-2.0"
    tree.mkdir()
    (tree / "hello.c").write_text(HELLO_C)
    (tree / "Makefile").write_text(C_MAKEFILE)
    (tree / "configure").write_text(CONFIGURE)
    (tree / "configure").chmod(0o755)
    with tarfile.open(tmp_path / "hello-2.0.tar.gz", "w:gz") as tar:
        tar.add(tree, "hello-2.0")
    spec = write_spec(
        tmp_path,
        'function = "buildNixShellImage"\n'
        "maxLayers = 3\n"  # buildah's vfs storage copies every lower layer for each layer
        "[drv]\n"
        'pname = "hello"\nversion = "2.0"\nsrc = "./hello-2.0.tar.gz"\n'
        'nativeBuildInputs = [{ deb = "gcc" }, { deb = "make" }, { deb = "libc6-dev" }]\n'
        'makeFlags = ["CC=gcc", "WHO=debian"]\ndoCheck = true\n',
    )
    built = tmp_path / "c.tar"
    build_ok(spec, built, "--compress", "none")  # 270 MB: gzip is not what is tested here
    image = read_archive(built)
    ctr = containers.buildah("from", "-q", f"docker-archive:{image.archive}").stdout
    script = "readlink /bin/sh; buildDerivation > log 2>&1 || cat log; $out/bin/hello; cat log"
    run = subprocess.run(
        buildah_run(containers, ctr.decode().strip(), "bash", "-c", script), capture_output=True
    )
    lines = run.stdout.decode().splitlines()
    assert lines[:2] == ["bash", "Hello, debian!"], run.stdout.decode() + run.stderr.decode()
    phases = [w.split()[-1] for w in lines if "Running phase" in w]
    assert phases[3:5] == ["buildPhase", "checkPhase"]
    out = dict(item.split("=", 1) for item in image.config["config"]["Env"])["out"]
    assert f"configure flags: --prefix={out}" in lines
