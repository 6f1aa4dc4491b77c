"""Arguments as nixpkgs' dockerTools takes them: names, Cmd strings, Nix-only arguments,
architecture names, and hints for arguments of the wrong function."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli, write_spec
from tests.support.containers import Containers, skopeo


def build(tmp_path: Path, text: str, out: str = "out.tar") -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    return vmbuild_cli("build", spec, "--out", tmp_path / out, "--compress", "none")


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error:"), proc.stderr
    return lines[0]


@pytest.mark.tools
def test_upper_case_name_loads_lower_cased(tmp_path: Path, containers: Containers) -> None:
    proc = build(tmp_path, 'name = "onTopOfPulledImage"\ntag = "V1"\n')
    assert proc.returncode == 0, proc.stderr
    loaded = containers.podman("load", "-i", str(tmp_path / "out.tar")).stdout.decode()
    assert "ontopofpulledimage:V1" in loaded


@pytest.mark.tools
@pytest.mark.parametrize("function", ["buildImage", "buildLayeredImage"])
def test_cmd_and_entrypoint_as_strings(tmp_path: Path, function: str) -> None:
    proc = build(
        tmp_path,
        f'function = "{function}"\nname = "s"\ntag = "1"\n'
        '[config]\nEntrypoint = "/bin/app"\nCmd = "--serve"\n',
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(
        skopeo("inspect", "--config", f"docker-archive:{tmp_path / 'out.tar'}").stdout
    )
    assert config["config"]["Entrypoint"] == ["/bin/app"]
    assert config["config"]["Cmd"] == ["--serve"]


def test_nix_only_arguments_warn_once_each(tmp_path: Path) -> None:
    proc = build(
        tmp_path,
        'name = "n"\nmeta = { description = "x" }\npassthru = { a = 1 }\nincludeNixDB = true\n',
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: warning:")]
    assert len(warnings) == 3, proc.stderr
    assert all("is ignored:" in w and "Nix" in w for w in warnings)
    layered = build(tmp_path, 'function = "buildLayeredImage"\nname = "n"\nlayeringPipeline = []\n')
    assert layered.returncode == 0 and "layeringPipeline is ignored" in layered.stderr


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('name = "x"\ncopyToRot = ["."]\n', "did you mean copyToRoot?"),
        ('name = "x"\nextracommands = ""\n', "did you mean extraCommands?"),
        ('function = "buildLayeredImage"\nname = "x"\nmaxLayer = 3\n', "did you mean maxLayers?"),
        ('name = "x"\nfrobnicate = 1\n', "check the spelling"),
    ],
)
def test_unknown_argument_suggests(tmp_path: Path, text: str, wanted: str) -> None:
    assert wanted in error_line(build(tmp_path, text))


@pytest.mark.tools
def test_architecture_aliases_warn_and_are_corrected(tmp_path: Path) -> None:
    proc = vmbuild_cli(
        "build",
        write_spec(tmp_path, 'name = "a"\narchitecture = "aarch64"\n'),
        "--out",
        tmp_path / "a.tar",
        "--compress",
        "none",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert 'architecture "aarch64" is spelled "arm64"' in proc.stderr
    info = json.loads(skopeo("inspect", f"docker-archive:{tmp_path / 'a.tar'}").stdout)
    assert info["Architecture"] == "arm64"


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('name = "a"\narchitecture = "amd-64"\n', "not a Go architecture name"),
        ('name = "a"\narchitecture = "arm64"\ncopyToRoot = ["binSh"]\n', "binSh is a host program"),
        ('name = "a"\narchitecture = "arm64"\nrunAsRoot = "true"\n', "runAsRoot cannot run"),
        (
            'function = "buildLayeredImage"\nname = "a"\narchitecture = "arm64"\n'
            'contents = [{ path = "/usr/bin/bash", closure = true }]\n',
            "/usr/bin/bash is a host program",
        ),
        (
            'function = "buildLayeredImage"\nname = "a"\narchitecture = "arm64"\n'
            'config.Cmd = ["/usr/bin/bash"]\n',
            "/usr/bin/bash is a host program",
        ),
    ],
)
def test_foreign_architecture_refuses_host_programs(tmp_path: Path, text: str, wanted: str) -> None:
    assert wanted in error_line(build(tmp_path, text))


def test_foreign_architecture_without_host_programs_builds(tmp_path: Path) -> None:
    proc = build(tmp_path, 'name = "a"\narchitecture = "riscv64"\ncopyToRoot = ["fakeNss"]\n')
    assert proc.returncode == 0, proc.stderr


def test_run_as_root_in_a_layered_spec_points_elsewhere(tmp_path: Path) -> None:
    line = error_line(
        build(tmp_path, 'function = "streamLayeredImage"\nname = "a"\nrunAsRoot = "x"\n')
    )
    assert "fakeRootCommands" in line and "buildImage" in line


def test_from_image_reference_points_to_pull_image(tmp_path: Path) -> None:
    line = error_line(build(tmp_path, 'name = "a"\nfromImage = "debian:12"\n'))
    assert "prefetch" in line and "pullImage" in line


def _compression_of(path: Path) -> str:
    head = path.read_bytes()[:4]
    return {b"\x1f\x8b": "gzip", b"\x28\xb5": "zstd"}.get(head[:2], "none")


@pytest.mark.parametrize("function", ["buildImage", "buildLayeredImage"])
@pytest.mark.parametrize(
    ("compressor", "flag", "wanted"),
    [
        ("none", None, "none"),
        ("gz", None, "gzip"),
        ("zstd", None, "zstd"),
        ("zstd", "none", "none"),
    ],
)
def test_compressor_argument(
    tmp_path: Path, function: str, compressor: str, flag: str | None, wanted: str
) -> None:
    spec = write_spec(
        tmp_path, f'function = "{function}"\nname = "c"\ncompressor = "{compressor}"\n'
    )
    extra = ["--compress", flag] if flag else []
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "img", *extra)
    assert proc.returncode == 0, proc.stderr
    assert _compression_of(tmp_path / "img") == wanted


def test_compressor_bad_value(tmp_path: Path) -> None:
    line = error_line(build(tmp_path, 'name = "c"\ncompressor = "xz"\n'))
    assert "compressor = 'xz'" in line and '"gz"' in line


@pytest.mark.parametrize(
    ("out", "flags", "warned"),
    [
        ("img.tar", [], "--compress none"),
        ("img.tar.gz", ["--compress", "none"], "--compress gzip"),
        ("img.tar.zst", [], "--compress zstd"),
        ("img.tar.gz", [], None),
        ("img.tar", ["--compress", "none"], None),
        ("img", [], None),
    ],
)
def test_out_suffix_contradicting_compression_warns(
    tmp_path: Path, out: str, flags: list[str], warned: str | None
) -> None:
    spec = write_spec(tmp_path, 'name = "c"\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / out, *flags)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: warning:")]
    if warned is None:
        assert not warnings, proc.stderr
    else:
        assert len(warnings) == 1 and warned in warnings[0], proc.stderr


def _layers(tmp_path: Path, text: str, out: str) -> list[str]:
    spec = tmp_path / f"{out}.toml"
    spec.write_text(text)
    proc = vmbuild_cli("build", spec, "--out", tmp_path / out, "--compress", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    return [layer["diffId"] for layer in json.loads(proc.stdout)["layers"]]


@pytest.mark.parametrize("function", ["buildImage", "buildLayeredImage"])
def test_created_now_changes_the_config_only(tmp_path: Path, function: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("x")
    key = "copyToRoot" if function == "buildImage" else "contents"
    text = (
        f'function = "{function}"\nname = "n"\ntag = "1"\ncreated = "now"\n'
        f'{key} = ["{root}", "fakeNss"]\nextraCommands = "mkdir -p made"\n'
    )
    first = _layers(tmp_path, text, "a.tar")
    again = _layers(tmp_path, text, "b.tar")
    fixed = _layers(tmp_path, text.replace('created = "now"', ""), "c.tar")
    assert first == again == fixed


def test_layered_mtime_sets_every_file_mtime(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("x")
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "m"\nmtime = "2020-02-02T00:00:00Z"\n'
        f'contents = ["{root}", {{ path = "/usr/bin/env", closure = true }}]\n',
    )
    out = tmp_path / "m.tar"
    assert vmbuild_cli("build", spec, "--out", out, "--compress", "none").returncode == 0
    stamps = set()
    with tarfile.open(out) as outer:
        for member in outer.getmembers():
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=outer.extractfile(member)) as layer:
                    stamps |= {m.mtime for m in layer.getmembers()}
    assert stamps == {1580601600}


def _layer_members(archive: Path) -> list[list[tarfile.TarInfo]]:
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layers = []
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                layers.append(layer.getmembers())
    return layers


@pytest.mark.tools
def test_layered_unit_layers_owned_by_uid_gid(tmp_path: Path, containers: Containers) -> None:
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "nonroot"\ntag = "1"\n'
        'uid = 1000\ngid = 1000\nuname = "app"\ngname = "app"\n'
        'contents = [{ path = "/usr/bin/env", closure = true }]\n'
        'extraCommands = "mkdir -p data"\n',
    )
    out = tmp_path / "nonroot.tar"
    assert vmbuild_cli("build", spec, "--out", out, "--compress", "none").returncode == 0
    *units, custom = _layer_members(out)
    assert units and all(
        (m.uid, m.gid, m.uname, m.gname) == (1000, 1000, "app", "app") for ms in units for m in ms
    )
    assert all((m.uid, m.gid) == (0, 0) for m in custom)
    assert "nonroot:1" in containers.podman("load", "-i", str(out)).stdout.decode()


def test_layered_default_owner_is_root_by_name(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "r"\n'
        'contents = [{ path = "/usr/bin/env", closure = true }]\n',
    )
    out = tmp_path / "r.tar"
    assert vmbuild_cli("build", spec, "--out", out, "--compress", "none").returncode == 0
    *units, _ = _layer_members(out)
    assert {(m.uid, m.uname, m.gname) for ms in units for m in ms} == {(0, "root", "root")}


def test_include_store_paths_false_keeps_only_the_customisation_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("x")
    spec = write_spec(
        tmp_path,
        'function = "buildLayeredImage"\nname = "nostore"\nincludeStorePaths = false\n'
        f'contents = ["{root}", "binSh", {{ path = "/usr/bin/env", closure = true }}]\n'
        'config.Cmd = ["/usr/bin/bash"]\nextraCommands = "ln -s /usr/bin/env usr-env"\n',
    )
    out = tmp_path / "nostore.tar"
    assert vmbuild_cli("build", spec, "--out", out, "--compress", "none").returncode == 0
    layers = _layer_members(out)
    assert len(layers) == 1
    names = {m.name.rstrip("/") for m in layers[0]}
    assert {"etc", "etc/app.conf", "usr-env"} <= names
    assert not any(n.startswith(("usr/lib", "lib", "bin/sh")) for n in names), names


@pytest.mark.tools
@pytest.mark.parametrize(
    ("function", "wanted"),
    [
        ("buildImage", ["A=1", "C=3", "B=new", "D=4"]),
        ("buildLayeredImage", ["A=1", "B=new", "C=3", "D=4"]),
    ],
)
def test_env_merged_with_the_base_as_nixpkgs(
    tmp_path: Path, function: str, wanted: list[str]
) -> None:
    base = write_spec(tmp_path, 'name = "base"\nconfig.Env = ["A=1", "B=2", "C=3"]\n')
    assert vmbuild_cli("build", base, "--out", tmp_path / "base.tar", "--compress", "none")
    spec = tmp_path / "top.toml"
    spec.write_text(
        f'function = "{function}"\nname = "top"\nfromImage = "base.tar"\n'
        'config.Env = ["B=new", "D=4"]\n'
    )
    out = tmp_path / "top.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{out}").stdout)
    assert config["config"]["Env"] == wanted


@pytest.mark.tools
@pytest.mark.parametrize("key", ["extraCommands", "fakeRootCommands"])
def test_symlinks_in_the_customisation_layer_bring_their_closure(
    tmp_path: Path, containers: Containers, key: str
) -> None:
    spec = write_spec(
        tmp_path,
        f'function = "buildLayeredImage"\nname = "refs"\ntag = "1"\n'
        f'{key} = "mkdir -p bin && ln -s /usr/bin/bash bin/sh && ln -s /etc/hostname host"\n',
    )
    out = tmp_path / "refs.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    *units, _ = _layer_members(out)
    names = {m.name for ms in units for m in ms}
    assert "usr/bin/bash" in names and any("libc.so" in n for n in names), names
    assert "etc/hostname" not in names  # not a program: the link stays as it is
    said = containers.run_image(out, "/bin/sh", "-c", "echo $BASH_VERSION")
    assert said.strip()


def test_a_customisation_symlink_to_a_host_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    spec = write_spec(
        tmp_path,
        f'function = "buildLayeredImage"\nname = "f"\nextraCommands = "ln -s {fifo} pipe"\n',
    )
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "f.tar.gz")
    assert proc.returncode == 0, proc.stderr
