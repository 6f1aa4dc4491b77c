"""Where an image goes (-o -, the default --out, an --out of the wrong kind) and what
`vmbuild inspect` reads back, through the real CLI."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import REPO, vmbuild_cli, write_spec

SPEC = 'name = "team/demo"\ntag = "1"\ncopyToRoot = ["root"]\nconfig = { Cmd = ["/hi"] }\n'


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    for i in range(3):
        (tmp_path / "root" / f"f{i}").write_text(f"file {i}\n")
    return write_spec(tmp_path, SPEC)


def no_leftovers(directory: Path) -> None:
    left = [p.name for p in directory.iterdir() if p.name.startswith(".")]
    assert not left, left


def test_out_dash_writes_the_archive_to_stdout(spec: Path, tmp_path: Path) -> None:
    file_out = tmp_path / "file.tar.gz"
    assert vmbuild_cli("build", spec, "-o", file_out).returncode == 0
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with open(tmp_path / "piped.tar.gz", "wb") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "vmbuild", "build", str(spec), "-o", "-", "--json"],
            stdout=sink,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "TMPDIR": str(tmp)},
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "piped.tar.gz").read_bytes() == file_out.read_bytes()
    err = proc.stderr.decode()
    assert json.loads(err[err.index("{") :])["out"] == "-"  # --json goes to stderr
    assert list(tmp.iterdir()) == []  # the private copy is gone


def test_out_dash_refuses_a_terminal_and_a_layout(spec: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "vmbuild", "build", str(spec), "-o", "-"],
            stdout=follower,
            stderr=subprocess.PIPE,
            cwd=REPO,
            text=True,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2 and "refusing to write an image to a terminal" in proc.stderr
    proc = vmbuild_cli("build", spec, "-o", "-", "--format", "oci")
    assert proc.returncode == 2 and "--format oci is a directory" in proc.stderr


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((), "team-demo-1.tar.gz"),
        (("--compress", "zstd"), "team-demo-1.tar.zst"),
        (("--compress", "none"), "team-demo-1.tar"),
        (("--format", "oci-archive"), "team-demo-1.oci.tar"),
        (("--format", "oci"), "team-demo-1"),
    ],
)
def test_default_out_is_named_from_the_spec(
    spec: Path, tmp_path: Path, args: tuple[str, ...], name: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = vmbuild_cli("build", spec, *args, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name
    assert sorted(os.listdir(work)) == [name]


def test_default_out_without_a_tag_is_the_name(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, 'name = "plain"\n')
    proc = vmbuild_cli("build", spec, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "plain.tar.gz", proc.stderr


def test_default_out_of_an_export_is_a_plain_tar(spec: Path, tmp_path: Path) -> None:
    image = tmp_path / "image.tar.gz"
    assert vmbuild_cli("build", spec, "-o", image).returncode == 0
    export = write_spec(tmp_path, f'function = "exportImage"\nfromImage = "{image}"\n', "e.toml")
    work = tmp_path / "work"
    work.mkdir()
    proc = vmbuild_cli("build", export, cwd=work)
    assert proc.returncode == 0 and proc.stdout.strip() == "rootfs.tar", proc.stderr
    with tarfile.open(work / "rootfs.tar", "r:") as tar:  # plain, as the name says
        assert "f0" in [m.name.lstrip("./") for m in tar]


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci"])
def test_an_out_of_the_wrong_kind_is_one_error_and_kept(
    spec: Path, tmp_path: Path, fmt: str
) -> None:
    other = tmp_path / "other"
    if fmt == "oci":
        other.write_text("keep")
    else:
        other.mkdir()
        (other / "inside").write_text("keep")
    proc = vmbuild_cli("build", spec, "--format", fmt, "-o", other)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("vmbuild: error: --out ") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "built" not in proc.stderr  # before any work
    assert (other.read_text() if fmt == "oci" else (other / "inside").read_text()) == "keep"
    no_leftovers(tmp_path)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci"])
def test_an_out_of_the_same_kind_is_replaced_whole(spec: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        proc = vmbuild_cli("build", spec, "--format", fmt, "-o", out)
        assert proc.returncode == 0, proc.stderr
    no_leftovers(tmp_path)


def _inspect(path: Path) -> list[dict[str, object]]:
    proc = vmbuild_cli("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    images: list[dict[str, object]] = json.loads(proc.stdout)
    return images


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("--compress", "none"), "a.tar"),
        (("--compress", "gzip"), "a.tar.gz"),
        (("--compress", "zstd"), "a.tar.zst"),
        (("--format", "oci-archive"), "a.oci.tar"),
        (("--format", "oci"), "layout"),
    ],
)
def test_inspect_reads_every_format(
    spec: Path, tmp_path: Path, args: tuple[str, ...], name: str
) -> None:
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, *args, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    built = json.loads(proc.stdout)
    (image,) = _inspect(out)
    assert image["names"] == ["team/demo:1"]
    assert image["config"] == {"Cmd": ["/hi"]}
    assert image["architecture"] == "amd64" and image["created"] == "1970-01-01T00:00:01Z"
    layers = image["layers"]
    assert isinstance(layers, list) and len(layers) == 1
    assert layers[0]["diffId"] == built["layers"][0]["diffId"]
    assert layers[0]["files"] == 3 and layers[0]["size"] > 0
    text = vmbuild_cli("inspect", out)
    assert text.returncode == 0
    assert "names: team/demo:1" in text.stdout and "3 files" in text.stdout
    assert 'Cmd: ["/hi"]' in text.stdout


def test_inspect_lists_every_image_of_a_merged_archive(spec: Path, tmp_path: Path) -> None:
    a = tmp_path / "a.tar"
    assert vmbuild_cli("build", spec, "-o", a, "--compress", "none").returncode == 0
    other = write_spec(tmp_path, 'name = "other"\ntag = "2"\n', "other.toml")
    b = tmp_path / "b.tar"
    assert vmbuild_cli("build", other, "-o", b, "--compress", "none").returncode == 0
    merge = write_spec(
        tmp_path, f'function = "mergeImages"\nimages = ["{a}", "{b}"]\n', "merge.toml"
    )
    merged = tmp_path / "m.tar"
    assert vmbuild_cli("build", merge, "-o", merged).returncode == 0
    assert [i["names"] for i in _inspect(merged)] == [["team/demo:1"], ["other:2"]]


def test_inspect_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        tar.add(__file__, "x")
    proc = vmbuild_cli("inspect", junk)
    assert proc.returncode == 1 and "not an image archive" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
