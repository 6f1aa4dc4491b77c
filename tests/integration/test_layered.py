"""buildLayeredImage / streamLayeredImage end to end through the CLI, checked with real tools."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import error_and_output
from tests.support.containers import Containers

pytestmark = pytest.mark.tools  # every test here runs the real CLI and host tools

BASH = "/usr/bin/bash"
MANY_LIBS = next(
    (p for p in ("/usr/bin/curl", "/usr/bin/ssh", "/usr/bin/gdb") if os.path.exists(p)), BASH
)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_spec(path: Path, **table: Any) -> Path:
    table.setdefault("function", "buildLayeredImage")
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in table.items()))
    return path


def vmbuild(*args: str | Path, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "vmbuild", *map(str, args)], capture_output=True, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr.decode())
    return proc


def build(tmp: Path, name: str, **table: Any) -> Path:
    """Build ``table`` to ``tmp/name.tar.gz``; returns the uncompressed ``tmp/name.tar``."""
    spec = write_spec(tmp / f"{name}.toml", name=name, **table)
    out = tmp / f"{name}.tar.gz"
    vmbuild("build", spec, "--out", out)
    plain = tmp / f"{name}.tar"
    with gzip.open(out) as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


def manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        entry: dict[str, Any] = json.load(f)[0]
        return entry


def layer_members(archive: Path) -> list[list[tarfile.TarInfo]]:
    with tarfile.open(archive) as tar:
        out = []
        for name in manifest(archive)["Layers"]:
            f = tar.extractfile(name)
            assert f is not None
            with tarfile.open(fileobj=f) as layer:
                out.append(layer.getmembers())
        return out


BASH_IMAGE = {
    "contents": [{"path": BASH, "closure": True}],
    "config": {"Cmd": [BASH, "-c", "echo ok"]},
}


@pytest.fixture(scope="module")
def bash_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("bash"), "layered-bash", **BASH_IMAGE)


@pytest.fixture
def buildah_container(bash_image: Path) -> Iterator[str]:
    proc = subprocess.run(
        ["buildah", "from", f"docker-archive:{bash_image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    container = proc.stdout.strip().splitlines()[-1]
    try:
        yield container
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        subprocess.run(["buildah", "rmi", manifest(bash_image)["RepoTags"][0]], capture_output=True)


def test_bash_closure_runs_under_buildah(buildah_container: str) -> None:
    proc = subprocess.run(
        ["buildah", "run", "--isolation", "chroot", buildah_container, "--", BASH, "-c", "echo ok"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_config_references_are_included(tmp_path: Path) -> None:
    archive = build(tmp_path, "byconfig", config={"Entrypoint": [BASH], "Cmd": ["-c", "echo ok"]})
    names = {m.name for layer in layer_members(archive) for m in layer}
    assert BASH.lstrip("/") in names
    assert any(n.endswith("/libc.so.6") for n in names)


def test_helpers_run_under_buildah(tmp_path: Path) -> None:
    archive = build(
        tmp_path,
        "helpers",
        contents=["binSh", "fakeNss", "usrBinEnv"],
        config={"Cmd": ["/bin/sh", "-c", "echo ok"]},
    )
    proc = subprocess.run(
        ["buildah", "from", f"docker-archive:{archive}"], capture_output=True, text=True, check=True
    )
    container = proc.stdout.strip().splitlines()[-1]
    try:
        run = subprocess.run(
            [
                "buildah",
                "run",
                "--isolation",
                "chroot",
                container,
                "--",
                "/usr/bin/env",
                "/bin/sh",
                "-c",
                'read -r l < /etc/passwd; echo "$l"; echo ok',
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        subprocess.run(["buildah", "rmi", manifest(archive)["RepoTags"][0]], capture_output=True)
    assert run.stdout.split() == ["root:x:0:0:root", "user:/var/empty:/bin/sh", "ok"], run.stderr


def test_stream_equals_build(bash_image: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.toml", function="streamLayeredImage", name="layered-bash", **BASH_IMAGE
    )
    streamed = vmbuild("stream", spec).stdout  # diff_ids remembered by the build
    assert streamed == bash_image.read_bytes()
    env = dict(os.environ, VMBUILD_CACHE_DIR=str(tmp_path / "empty-cache"))
    assert vmbuild("stream", spec, env=env).stdout == streamed  # every layer hashed
    # layers are named by position; `repositories` names the top one
    layers = manifest(bash_image)["Layers"]
    assert layers == [f"{i + 1:064x}/layer.tar" for i in range(len(layers))]
    with tarfile.open(bash_image) as tar:
        f = tar.extractfile("repositories")
        assert f is not None
        tag = manifest(bash_image)["RepoTags"][0].split(":")[-1]
        assert json.load(f) == {"layered-bash": {tag: layers[-1].split("/")[0]}}


def test_stream_piped_into_podman_load(tmp_path: Path, containers: Containers) -> None:
    """``vmbuild stream | podman load`` through a real pipe (file data spliced into it,
    every diff_id hashed by the pool: the cache is empty), then the image runs."""
    spec = write_spec(
        tmp_path / "p.toml", function="streamLayeredImage", name="piped-bash", **BASH_IMAGE
    )
    env = dict(os.environ, VMBUILD_CACHE_DIR=str(tmp_path / "empty-cache"))
    stream = subprocess.Popen(
        [sys.executable, "-m", "vmbuild", "stream", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert stream.stdout is not None
    try:
        load = containers.podman("load", stdin=stream.stdout)
    finally:
        stream.stdout.close()
        _, err = stream.communicate(timeout=60)
    assert stream.returncode == 0, err.decode()
    loaded = (load.stdout + load.stderr).decode()
    ref = next(w for w in loaded.split() if "piped-bash:" in w)
    ctr = containers.buildah("from", "-q", ref).stdout.decode().strip()
    try:
        run = containers.buildah("run", "--isolation", "chroot", ctr, "--", BASH, "-c", "echo ok")
    finally:
        containers.buildah("rm", ctr)
    assert run.stdout == b"ok\n"


def test_skopeo_umoci_and_podman_accept_the_image(bash_image: Path, tmp_path: Path) -> None:
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"docker-archive:{bash_image}"], capture_output=True, check=True
        ).stdout
    )
    assert len(info["Layers"]) == len(manifest(bash_image)["Layers"])
    layout = tmp_path / "oci"
    subprocess.run(
        ["skopeo", "copy", f"docker-archive:{bash_image}", f"oci:{layout}:t"],
        capture_output=True,
        check=True,
    )
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:t", str(bundle)],
        capture_output=True,
        check=True,
    )
    assert (bundle / "rootfs" / BASH.lstrip("/")).is_file()
    assert (bundle / "rootfs" / "lib64").is_symlink() or not Path("/lib64").is_symlink()
    ref = manifest(bash_image)["RepoTags"][0]
    with open(bash_image, "rb") as f:
        load = subprocess.run(["podman", "load"], stdin=f, capture_output=True, text=True)
    try:
        assert load.returncode == 0, load.stderr
        assert ref in load.stdout
    finally:
        subprocess.run(["podman", "rmi", "-f", ref], capture_output=True)


def test_oci_layout_has_the_same_layers(bash_image: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "oci.toml", name="layered-bash", **BASH_IMAGE)
    layout = tmp_path / "layout"
    vmbuild("build", spec, "--out", layout, "--format", "oci", "--compress", "zstd")
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci:{layout}"], capture_output=True, check=True
        ).stdout
    )
    with tarfile.open(bash_image) as tar:
        f = tar.extractfile(manifest(bash_image)["Config"])
        assert f is not None
        expected = json.load(f)["rootfs"]["diff_ids"]
    assert info["rootfs"]["diff_ids"] == expected


def test_max_layers_is_respected(tmp_path: Path) -> None:
    table = {"contents": [{"path": MANY_LIBS, "closure": True}], "minLayerSize": 0}
    roomy = manifest(build(tmp_path, "roomy", **table))["Layers"]
    tight = manifest(build(tmp_path, "tight", maxLayers=4, **table))["Layers"]
    assert len(tight) == 4 < len(roomy) <= 100
    # the most popular unit (the C library) keeps its layer either way
    assert roomy[0] == tight[0]


def test_base_layers_count_toward_max_layers(bash_image: Path, tmp_path: Path) -> None:
    base_layers = len(manifest(bash_image)["Layers"])
    table = {"fromImage": str(bash_image), "contents": [{"path": MANY_LIBS, "closure": True}]}
    ok = build(tmp_path, "onbase", maxLayers=base_layers + 2, **table)
    # (an empty customisation layer equals the base's, and is not repeated)
    assert base_layers < len(manifest(ok)["Layers"]) <= base_layers + 2
    # with room, the libraries the base already has (same host files) are not repeated
    roomy = manifest(build(tmp_path, "roomy", **table))["Layers"]
    assert roomy[:base_layers] == manifest(bash_image)["Layers"]
    assert len(set(roomy)) == len(roomy) > base_layers + 2
    spec = write_spec(tmp_path / "bad.toml", name="bad", maxLayers=base_layers + 1, **table)
    proc = vmbuild("build", spec, "--out", tmp_path / "bad.tar.gz", check=False)
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert "maxLayers" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("bad.tar.gz*")) and not list(tmp_path.glob(".bad*"))


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"maxLayers": 126}, "maxLayers"),
        ({"maxLayers": 1}, "maxLayers"),
        ({"contents": [{"path": "/etc/hostname", "closure": True}]}, "not an ELF file"),
        ({"contents": ["/nonexistent/tree"]}, "does not exist"),
        ({"extraCommands": "false"}, "extraCommands failed"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, table: dict[str, Any], needle: str
) -> None:
    spec = write_spec(tmp_path / "bad.toml", name="bad", **table)
    proc = vmbuild("build", spec, "--out", tmp_path / "bad.tar.gz", check=False)
    err = proc.stderr.decode().strip()
    assert proc.returncode != 0 and needle in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [spec]


def test_a_failing_fake_root_script_shows_its_output_and_writes_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "bad.toml", name="bad", fakeRootCommands="echo oops >&2; exit 3")
    proc = vmbuild("build", spec, "--out", tmp_path / "bad.tar.gz", check=False)
    line, shown = error_and_output(proc.stderr.decode())
    assert proc.returncode == 4 and "fakeRootCommands failed with status 3 -- " in line
    assert shown == ["oops"]
    assert list(tmp_path.iterdir()) == [spec]


def test_missing_library_is_named_with_the_paths_searched(tmp_path: Path) -> None:
    data = Path(BASH).read_bytes()
    needed = b"libtinfo.so.6\0"
    if needed not in data:
        pytest.skip("this host's bash does not need libtinfo.so.6")
    prog = tmp_path / "prog"
    prog.write_bytes(data.replace(needed, b"libnothere.so\0", 1))
    prog.chmod(0o755)
    spec = write_spec(
        tmp_path / "bad.toml", name="bad", contents=[{"path": str(prog), "closure": True}]
    )
    proc = vmbuild("build", spec, "--out", tmp_path / "bad.tar.gz", check=False)
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert "libnothere.so" in err and "/etc/ld.so.cache" in err and "/usr/lib" in err
    assert not list(tmp_path.glob("*bad.tar.gz*"))


def test_images_from_the_same_libraries_share_layers(bash_image: Path, tmp_path: Path) -> None:
    other = build(
        tmp_path,
        "other",
        created="2024-01-01T00:00:00Z",
        contents=[{"path": MANY_LIBS, "closure": True}],
    )
    assert set(manifest(bash_image)["Layers"][:2]) & set(manifest(other)["Layers"])


def test_fake_root_commands_land_in_the_archive(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hi\n")
    archive = build(
        tmp_path,
        "fakeroot",
        contents=[str(tree)],
        extraCommands="mkdir -p data && echo x > data/file",
        fakeRootCommands="chown 1000:100 data/file\nchmod 4711 data/file\n"
        "mknod dev-null c 1 3\necho made > /etc/made\n",
        enableFakechroot=True,
    )
    last = {m.name: m for m in layer_members(archive)[-1]}
    assert (last["data/file"].uid, last["data/file"].gid, last["data/file"].mode) == (
        1000,
        100,
        0o4711,
    )
    assert last["dev-null"].ischr() and (last["dev-null"].devmajor, last["dev-null"].devminor) == (
        1,
        3,
    )
    assert "etc/made" in last and "etc/motd" in last
    assert last["etc/motd"].uid == 0


def test_stream_memory_stays_bounded(tmp_path: Path) -> None:
    tree = tmp_path / "big"
    tree.mkdir()
    with open(tree / "sparse", "wb") as f:
        f.truncate(2 << 30)
    spec = write_spec(
        tmp_path / "big.toml", function="streamLayeredImage", name="big", contents=[str(tree)]
    )
    code = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run([sys.executable, '-m', 'vmbuild', 'stream', {str(spec)!r}],"
        " stdout=subprocess.DEVNULL)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    status, rss_kib = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert status == "0"
    assert int(rss_kib) < 200 * 1024


def test_ctrl_c_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    """SIGINT while the stream waits on a full pipe (the hash pool busy meanwhile): one
    line, status 130, no temp dir left."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(8):
        (tree / f"f{i}").write_bytes(bytes([i]) * (4 << 20))
    spec = write_spec(
        tmp_path / "s.toml",
        function="streamLayeredImage",
        name="interrupted",
        contents=[{"path": BASH, "closure": True}, str(tree)],
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), VMBUILD_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmbuild", "stream", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert os.read(proc.stdout.fileno(), 1)  # started; the pipe then fills up
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (130, "vmbuild: interrupted\n")
    assert list(scratch.iterdir()) == []
