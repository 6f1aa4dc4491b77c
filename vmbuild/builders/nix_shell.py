"""buildNixShellImage and streamNixShellImage: a recipe's build environment as an image.

The image is a layered image (:mod:`vmbuild.builders.layered`) whose contents are
binSh, usrBinEnv, caCertificates, fakeNss with the ``nixbld`` build user, the shell,
a base toolset like stdenv's (the host's coreutils, tar, gzip, sed, grep, find, ...)
and the recipe's inputs, each content unit shared with other images built from the
same sources. When the inputs are Debian packages, so are the shell and the toolset
(bash, coreutils, tar, ...: ``/bin/sh`` is a link to bash, env is coreutils'), so no
host program sits beside the packages' libraries. The customisation layer holds what
is the recipe's own (``/nix-shell``: the setup file, the rc file, ``buildDerivation``,
passAsFile files and the source), and the build user's ``/build``, home and
``/nix/store``. A new src or hook changes only that layer and the config.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vmbuild import resources, tempdirs
from vmbuild.builders import layered
from vmbuild.builders.result import BuildResult
from vmbuild.config.layered import ClosureItem, ContentItem, LayeredSpec
from vmbuild.config.nixshell import NixShellSpec, Recipe
from vmbuild.errors import SpecError
from vmbuild.oci.output import OutputOptions
from vmbuild.registry.nixhash import to_base32
from vmbuild.sources import Item
from vmbuild.units.helpers import CA_BUNDLE, Helper

SHELL_DIR = "/nix-shell"  # the recipe's own files in the image
SETUP = f"{SHELL_DIR}/setup"
RCFILE = f"{SHELL_DIR}/rc"
BIN = f"{SHELL_DIR}/bin"
STORE = "/nix/store"
BUILD_DIR = "/build"  # Nix's sandbox build directory
# stdenv's own tools, from the host: what the setup file's phases run
TOOLS = (
    "basename",
    "cat",
    "chmod",
    "cp",
    "cut",
    "date",
    "dirname",
    "echo",
    "env",
    "expr",
    "false",
    "head",
    "id",
    "install",
    "ln",
    "ls",
    "mkdir",
    "mktemp",
    "mv",
    "printf",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tee",
    "test",
    "touch",
    "tr",
    "true",
    "uname",
    "uniq",
    "wc",
    "tar",
    "gzip",
    "sed",
    "grep",
    "find",
    "xargs",
)
OPTIONAL_TOOLS = ("bzip2", "xz", "diff", "cmp", "patch", "awk")
HOST_BIN = ("/usr/bin", "/bin")
TREE_BINS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin")


def _tool(name: str, required: bool) -> Path | None:
    found = shutil.which(name, path=os.pathsep.join(HOST_BIN))
    if found is None and required:
        raise SpecError(f"buildNixShellImage needs the host's {name}", "run scripts/setup")
    return Path(found) if found else None


def host_tools() -> list[Path]:
    tools = [_tool(name, True) for name in TOOLS]
    tools += [_tool(name, False) for name in OPTIONAL_TOOLS]
    return [t for t in tools if t is not None]


def program_dirs(item: ContentItem) -> list[str]:
    """The image directories holding ``item``'s programs (for PATH)."""
    if isinstance(item, ClosureItem):
        return [os.path.dirname(str(item.path))]
    if isinstance(item, Helper):
        return {"binSh": ["/bin"], "usrBinEnv": ["/usr/bin"]}.get(item.name, [])
    if isinstance(item, Path):
        return [f"/{d}" for d in TREE_BINS if (item / d).is_dir()]
    return ["/usr/bin", "/usr/sbin"]  # a package (Debian's: merged /usr)


def describe(item: ContentItem) -> str:
    """What an input's variable (``$nativeBuildInputs``) says of it."""
    if isinstance(item, ClosureItem):
        return str(item.path)
    if isinstance(item, Helper):
        return item.name
    if isinstance(item, Item):
        return item.describe()
    return str(item)


def _tree_digest(root: Path) -> Iterator[bytes]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*filenames, *(d for d in dirnames if Path(dirpath, d).is_symlink())]):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root)).encode()
            if path.is_symlink():
                yield b"l" + rel + b"\0" + os.readlink(path).encode() + b"\0"
            elif path.is_file():
                yield b"f" + rel + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-")
                yield hashlib.sha256(path.read_bytes()).digest()


def src_digest(src: Path) -> str:
    h = hashlib.sha256()
    if src.is_dir():
        for chunk in _tree_digest(src):
            h.update(chunk)
    else:
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def recipe_hash(drv: Recipe) -> str:
    """Nix-base32 of 160 bits of the recipe (variables, inputs, outputs, the source's
    content), as a store path's hash: it names the outputs' directories."""
    doc = {
        "name": drv.name,
        "variables": drv.variables,
        "inputs": [[key, [describe(i) for i in items]] for key, items in drv.inputs],
        "outputs": drv.outputs,
        "passAsFile": drv.pass_as_file,
        "src": src_digest(drv.src) if drv.src else None,
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return to_base32(hashlib.sha256(blob).digest()[:20])


def output_paths(drv: Recipe) -> dict[str, str]:
    digest = recipe_hash(drv)
    return {
        o: f"{STORE}/{digest}-{drv.name}" + ("" if o == "out" else f"-{o}") for o in drv.outputs
    }


def src_path(drv: Recipe) -> str | None:
    return f"{SHELL_DIR}/src/{drv.src.name}" if drv.src else None


def environment(spec: NixShellSpec, outputs: dict[str, str]) -> list[str]:
    """The image's Env, as nixpkgs' streamNixShellImage sets it: its defaults, then the
    recipe's variables, then the sandbox's fixed ones (sorted by name)."""
    drv = spec.drv
    dirs = [os.path.dirname(str(spec.shell)), BIN]
    for _, items in drv.inputs:
        dirs += [d for i in items for d in program_dirs(i)]
    dirs += HOST_BIN
    env = {
        "SSL_CERT_FILE": str(CA_BUNDLE),
        "NIX_SSL_CERT_FILE": str(CA_BUNDLE),
        "PATH": ":".join(dict.fromkeys(dirs)),
        "HOME": spec.home,
        "NIX_STORE": STORE,
        "NIX_BUILD_CORES": "1",
    }
    for key, value in drv.variables:
        if key in drv.pass_as_file:
            env[f"{key}Path"] = f"{SHELL_DIR}/files/{key}"
        else:
            env[key] = value
    for key, items in drv.inputs:
        env[key] = " ".join(describe(i) for i in items)
    src = src_path(drv)
    if src:
        env["src"] = src
    env.update(outputs)
    for key in ("NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"):
        env[key] = BUILD_DIR
    env["TERM"] = "xterm-256color"
    return [f"{k}={v}" for k, v in sorted(env.items())]


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def recipe_tree(spec: NixShellSpec, root: Path) -> Path:
    """Write ``/nix-shell`` (setup, rc, bin/buildDerivation, files/, src/) under ``root``."""
    own = root / SHELL_DIR.lstrip("/")
    shell = shlex.quote(str(spec.shell))

    def filled(name: str) -> str:
        text = resources.nixshell_file(name)
        return text.replace("@shell@", shell).replace("@setup@", SETUP)

    _write(own / "setup", resources.nixshell_file("setup.sh"), 0o644)
    rc = filled("rcfile.sh")
    for script in (spec.command, spec.run):
        if script is not None:
            rc += f"{script}\nexit\n"
    _write(own / "rc", rc, 0o644)
    _write(own / "bin" / "buildDerivation", filled("buildDerivation.sh"), 0o755)
    values = dict(spec.drv.variables)
    for key in spec.drv.pass_as_file:
        _write(own / "files" / key, values[key], 0o644)
    src = spec.drv.src
    if src is not None:
        (own / "src").mkdir(parents=True)
        target = own / "src" / src.name
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copyfile(src, target)
            os.chmod(target, 0o644)
    if spec.from_packages:  # /bin/sh: bash, as binSh gives it (/bin is usr/bin there)
        (root / "usr" / "bin").mkdir(parents=True)
        os.symlink("bash", root / "usr" / "bin" / "sh")
    for d in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        os.chmod(d, 0o755)
    return root


def fake_root_commands(spec: NixShellSpec, outputs: dict[str, str]) -> str:
    """/build, the home directory, /nix and the outputs' directories, the build user's."""
    owned = [BUILD_DIR, spec.home, "/nix", f"{STORE}", "/nix/var/nix", *outputs.values()]
    paths = " ".join(shlex.quote("." + p) for p in dict.fromkeys(owned))
    return f"mkdir -p {paths}\nchown -R {spec.uid}:{spec.gid} ./nix {paths}\n"


def layered_spec(spec: NixShellSpec, workdir: Path) -> LayeredSpec:
    outputs = output_paths(spec.drv)
    passwd = f"nixbld:x:{spec.uid}:{spec.gid}:Build user:{spec.home}:/noshell"
    nss = Helper("fakeNss", (passwd,), (f"nixbld:!:{spec.gid}:",))
    base: list[ContentItem]
    if spec.from_packages:  # spec.contents: the packages' toolset, then the inputs
        base = [ClosureItem(spec.shell)] if spec.shell_given else []
    else:
        base = [Helper("binSh"), Helper("usrBinEnv"), ClosureItem(spec.shell)]
        base += [ClosureItem(t) for t in host_tools()]
    contents: list[ContentItem] = [
        Helper("caCertificates"),
        nss,
        *base,
        *spec.contents,
        recipe_tree(spec, workdir / "recipe"),
    ]
    cmd = [str(spec.shell), "--rcfile", RCFILE] if spec.run is None else [str(spec.shell), RCFILE]
    config = {
        "User": f"{spec.uid}:{spec.gid}",
        "Cmd": cmd,
        "WorkingDir": BUILD_DIR,
        "Env": environment(spec, outputs),
    }
    return LayeredSpec(
        function="streamLayeredImage" if spec.streaming else "buildLayeredImage",
        name=spec.name,
        tag=spec.tag,
        contents=tuple(contents),
        config=config,
        architecture=spec.architecture,
        created=spec.created,
        max_layers=spec.max_layers,
        fake_root_commands=fake_root_commands(spec, outputs),
        compressor=spec.compressor,
        tables=spec.tables,
        build_args=spec.build_args,
    )


def build(spec: NixShellSpec, out: Path, opts: OutputOptions) -> BuildResult:
    with tempdirs.workdir("vmbuild-nixshell-") as wd:
        return layered.build(layered_spec(spec, Path(wd)), out, opts)


def stream(spec: NixShellSpec, sink: BinaryIO) -> None:
    with tempdirs.workdir("vmbuild-nixshell-") as wd:
        layered.stream(layered_spec(spec, Path(wd)), sink)
