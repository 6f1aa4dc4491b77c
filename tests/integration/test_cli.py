"""The CLI's contract: one line per error, exit codes, nothing half-written, reproducible."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.images import rich_tree


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("spec", "exit_code", "message"),
    [
        ('tag = "x"\n', 2, "name is required"),
        ('name = "x"\nbogus = 1\n', 2, "unknown argument 'bogus'"),
        ('name = "x"\nconfig = { Bogus = 1 }\n', 2, "unknown config key 'Bogus'"),
        ('name = "x"\ncopyToRoot = "nope"\n', 2, "nope does not exist"),
        ('name = "x"\ncreated = "soon"\n', 2, "not an ISO-8601 date"),
        ('name = "x"\n[config\n', 2, "TOML syntax error"),
        ('name = "x"\nfromImage = "junk.tar"\n', 1, "not an image archive"),
        ('name = "x"\nfromImage = "truncated.tar"\n', 1, "truncated"),
        ('name = "x"\nfromImage = "garbage.tar.gz"\n', 1, "not a readable image archive"),
        (
            'name = "x"\nfromImage = "good.tar"\nfromImageName = "good"\nfromImageTag = "nope"\n',
            1,
            "has no image good:nope",
        ),
        ('name = "x"\nextraCommands = "echo failing >&2; exit 7"\n', 4, "status 7: failing"),
    ],
)
def test_bad_input_one_line_no_output(
    tmp_path: Path, spec: str, exit_code: int, message: str
) -> None:
    (tmp_path / "junk.tar").write_bytes(b"\0" * 1024)
    good = tmp_path / "good.tar"
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "f").write_bytes(os.urandom(200_000))
    (tmp_path / "good.toml").write_text('name = "good"\ntag = "1"\ncopyToRoot = "g"\n')
    assert (
        vmbuild_cli("build", tmp_path / "good.toml", "--out", good, "--compress", "none").returncode
        == 0
    )
    (tmp_path / "truncated.tar").write_bytes(good.read_bytes()[:150_000])
    (tmp_path / "garbage.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(100))
    (tmp_path / "image.toml").write_text(spec)
    out = tmp_path / "out" / "image.tar.gz"
    out.parent.mkdir()
    proc = vmbuild_cli("build", tmp_path / "image.toml", "--out", out)
    assert proc.returncode == exit_code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vmbuild: error: ") and message in lines[0]
    assert " -- " in lines[0]  # the hint
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and leftovers(out.parent) == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "image.toml").write_text('tag = "x"\n')
    proc = vmbuild_cli("--debug", "build", tmp_path / "image.toml", "--out", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_json_reports_the_passthru(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "f").write_text("x")
    (tmp_path / "image.toml").write_text('name = "j"\ncopyToRoot = "r"\n')
    proc = vmbuild_cli("build", tmp_path / "image.toml", "--out", tmp_path / "o.tar.gz", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["imageTag"]) == 32 and data["buildArgs"] == {"name": "j", "copyToRoot": "r"}
    assert data["layers"][0]["diffId"].startswith("sha256:")
    assert data["configDigest"].startswith("sha256:")
    with tarfile.open(tmp_path / "o.tar.gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [f"j:{data['imageTag']}"]
    assert manifest[0]["Config"] == data["configDigest"].split(":")[1] + ".json"


SPEC = """
name = "repro"
copyToRoot = ["root", "fakeNss", "binSh"]
extraCommands = "mkdir -p data && echo made > data/made && ln -s data/made link"
config = { Cmd = ["/bin/sh"] }
"""


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_reproducible_whatever_the_environment(tmp_path: Path, fmt: str) -> None:
    """Same spec, different umask/TZ/locale/tmpdir/checkout path/mtimes -> same bytes."""
    digests = []
    for i, env in enumerate(
        [
            {"TZ": "UTC", "LANG": "C"},
            {"TZ": "Asia/Kolkata", "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"},
        ]
    ):
        checkout = tmp_path / f"checkout-{i}" / ("deeper" * i)
        checkout.mkdir(parents=True)
        rich_tree(checkout / "root")
        for p in (checkout / "root").rglob("*"):
            os.utime(p, (1e9 + i * 12345, 1e9 + i * 12345), follow_symlinks=False)
        (checkout / "image.toml").write_text(SPEC)
        tmpdir = tmp_path / f"tmp-{i}"
        tmpdir.mkdir()
        env = {**env, "TMPDIR": str(tmpdir)}
        out = checkout / "image.out"
        old = os.umask(0o022 if i == 0 else 0o077)
        try:
            proc = vmbuild_cli(
                "build",
                checkout / "image.toml",
                "--out",
                out,
                "--format",
                fmt,
                env=env,
                cwd=checkout,
            )
        finally:
            os.umask(old)
        assert proc.returncode == 0, proc.stderr
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
        assert list(tmpdir.iterdir()) == []  # nothing left behind in the temp dir
    assert digests[0] == digests[1]
