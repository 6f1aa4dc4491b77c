"""--out is safe: links followed, special files refused, every bad path one line, no leftovers.

Tests run as root (as CI does): they mount small tmpfs file systems (read-only, full).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli

FORMATS = ("docker-archive", "oci-archive", "oci")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text('name = "outcheck"\ntag = "1"\n')
    return path


@pytest.fixture
def big_spec(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "blob").write_bytes(os.urandom(2 << 20))  # does not compress: fills 1 MiB
    path = tmp_path / "big.toml"
    path.write_text(f'name = "outcheck"\ntag = "1"\ncopyToRoot = ["{root}"]\n')
    return path


def _mount(target: Path, options: str) -> Iterator[Path]:
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "ro", "size=1m,ro")


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "full", "size=1m")


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: error:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def no_parts(directory: Path) -> None:
    left = [p.name for p in directory.iterdir() if p.name.endswith(".part") or ".old-" in p.name]
    assert not left, left


def is_image(path: Path, fmt: str) -> bool:
    if fmt == "oci":
        return bool(json.loads((path / "index.json").read_text())["manifests"])
    with tarfile.open(path) as tar:
        names = tar.getnames()
    return ("manifest.json" if fmt == "docker-archive" else "index.json") in names


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_symlink_at_out_is_followed_and_kept(spec: Path, tmp_path: Path, fmt: str) -> None:
    real = tmp_path / "real"
    if fmt == "oci":
        real.mkdir()  # an older layout, replaced whole
        (real / "stale").write_text("old")
    else:
        real.write_text("old")
    link = tmp_path / "link"
    link.symlink_to("real")
    proc = vmbuild_cli("build", spec, "--out", link, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(link)
    assert link.is_symlink() and os.readlink(link) == "real"
    assert is_image(real, fmt)
    assert not (real / "stale").exists()
    no_parts(tmp_path)


def test_a_dangling_symlink_creates_its_target(spec: Path, tmp_path: Path) -> None:
    (tmp_path / "link.tar").symlink_to("made.tar")
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "link.tar", "--compress", "none")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link.tar").is_symlink()
    assert is_image(tmp_path / "made.tar", "docker-archive")


@pytest.mark.parametrize("fmt", FORMATS)
def test_special_files_are_refused_and_kept(spec: Path, tmp_path: Path, fmt: str) -> None:
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (dev, fifo, tmp_path / "link-to-dev"):
        if target.name == "link-to-dev":
            target.symlink_to(dev)
        proc = vmbuild_cli("build", spec, "--out", target, "--format", fmt)
        one_error_line(proc, str(target))
    assert stat.S_ISCHR(dev.lstat().st_mode)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    no_parts(tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_out_paths_are_one_line(spec: Path, tmp_path: Path, fmt: str) -> None:
    empty = vmbuild_cli("build", spec, "--out", "", "--format", fmt)
    one_error_line(empty, "--out is empty")
    assert empty.returncode == 2
    one_error_line(
        vmbuild_cli("build", spec, "--out", tmp_path / "no" / "x", "--format", fmt),
        "does not exist",
    )
    one_error_line(
        vmbuild_cli("build", spec, "--out", ".", "--format", fmt, cwd=tmp_path), "directory"
    )
    other = tmp_path / ("file" if fmt == "oci" else "dir")
    if fmt == "oci":
        other.write_text("keep")
    else:
        other.mkdir()
    one_error_line(vmbuild_cli("build", spec, "--out", other, "--format", fmt), str(other))
    assert other.read_text() == "keep" if fmt == "oci" else other.is_dir()
    no_parts(tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_only_file_system(spec: Path, read_only: Path, fmt: str) -> None:
    proc = vmbuild_cli("build", spec, "--out", read_only / "x", "--format", fmt)
    one_error_line(proc, "read-only", str(read_only))


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_file_system(big_spec: Path, full: Path, fmt: str) -> None:
    proc = vmbuild_cli(
        "build", big_spec, "--out", full / "x", "--format", fmt, "--compress", "none"
    )
    one_error_line(proc, "No space left on device", str(full / "x"))
    assert os.listdir(full) == []


def test_stale_parts_are_swept_and_live_ones_kept(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "img.tar"
    stale = tmp_path / ".img.tar.999999.dead.part"
    stale.write_text("left by a killed build")
    stale_dir = tmp_path / ".img.tar.999998.dead.part"
    stale_dir.mkdir()
    (stale_dir / "blobs").mkdir()
    live = tmp_path / ".img.tar.1.live.part"
    live.write_text("being written")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        proc = vmbuild_cli("build", spec, "--out", out)
        assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and not stale_dir.exists()
    assert live.exists()
    other = tmp_path / ".other.tar.999999.dead.part"  # another output's: not ours to touch
    other.write_text("x")
    assert vmbuild_cli("build", spec, "--out", out).returncode == 0
    assert other.exists()


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "roomy", "size=64m")


def test_an_out_replaced_with_a_base_layer_copied_by_the_kernel(
    tmp_path: Path, roomy: Path
) -> None:
    """A base's layer reaches --out by copy_file_range (same file system), sendfile
    (tmpfs from elsewhere): the same bytes. An older --out is swapped out whole: a hard
    link to it keeps the old image, and no part is left."""
    from tests.support.images import image_from_layers, layer_tar

    layer = layer_tar(tmp_path / "l.tar", [("etc", "d", ""), ("etc/big", "f", os.urandom(3 << 20))])
    base = image_from_layers(tmp_path / "base.tar", [layer])
    spec = tmp_path / "ontop.toml"
    spec.write_text(f'name = "ontop"\ntag = "1"\nfromImage = "{base}"\n')
    out = tmp_path / "img.tar"
    old = tmp_path / "old.tar"
    out.write_bytes(b"an older image")
    os.link(out, old)
    for target in (out, roomy / "img.tar"):
        proc = vmbuild_cli("build", spec, "--out", target, "--compress", "none")
        assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (roomy / "img.tar").read_bytes()
    assert old.read_bytes() == b"an older image"
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        stored = next(
            m for n, m in members.items() if n.endswith("/layer.tar") and m.size > 1 << 20
        )
        got = tar.extractfile(stored)
        assert got is not None and got.read() == layer.read_bytes()
    no_parts(tmp_path)
    no_parts(roomy)


# --- --sbom and --provenance: their own paths, named in their own errors -----------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("--out", "--sbom"), ("--out", "--provenance"), ("--sbom", "--provenance")],
)
def test_two_outputs_naming_one_file_are_refused_before_any_work(
    spec: Path, tmp_path: Path, first: str, second: str
) -> None:
    """`--out img.tar --sbom img.tar` replaced the image with the SBOM and said "built"."""
    out = tmp_path / "img.tar"
    out.write_bytes(b"an older image")
    (tmp_path / "link.tar").symlink_to("img.tar")  # the same file, by a symlink
    paths = {"--out": tmp_path / "other.tar", first: out, second: tmp_path / "link.tar"}
    args = [a for option, path in paths.items() for a in (option, path)]
    proc = vmbuild_cli("build", spec, *args, "--compress", "none")
    line = one_error_line(proc, first, second, str(out))
    assert proc.returncode == 2, line
    assert out.read_bytes() == b"an older image"
    assert not (tmp_path / "other.tar").exists()
    no_parts(tmp_path)


def test_a_spec_sbom_beside_out_and_a_provenance_there_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text('name = "outcheck"\ntag = "1"\nsbom = true\n')
    out = tmp_path / "img.tar"
    proc = vmbuild_cli("build", path, "--out", out, "--provenance", f"{out}.spdx.json")
    one_error_line(proc, "--provenance", "the spec's sbom file")
    assert proc.returncode == 2
    assert not out.exists()


@pytest.mark.parametrize("option", ["--sbom", "--provenance"])
def test_bad_sbom_and_provenance_paths_name_their_option(
    spec: Path, tmp_path: Path, option: str
) -> None:
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (tmp_path / "dir").mkdir()
    out = tmp_path / "img.tar"
    cases: list[tuple[str | Path, str]] = [
        (tmp_path / "dir", "is a directory"),
        (dev, "special file"),
        ("", "is empty"),
        (".", "is a directory"),
    ]
    for bad, says in cases:
        proc = vmbuild_cli("build", spec, "--out", out, option, bad, cwd=tmp_path)
        line = one_error_line(proc, f"{option} ", says)
        assert "--out" not in line, line
        assert proc.returncode == 2, line
    assert stat.S_ISCHR(dev.lstat().st_mode)
    assert not out.exists()
    no_parts(tmp_path)


def test_vmbuild_lock_refuses_a_device_lock_path_before_resolving(tmp_path: Path) -> None:
    """`lock = "devlock"` (a character device) was replaced by a regular file."""
    dev = tmp_path / "devlock"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'function = "buildLayeredImage"\nname = "x"\ntag = "1"\ncontents = [{ deb = "hello" }]\n'
        '[debian]\nmirror = "http://127.0.0.1:9/"\nsuite = "testing"\nlock = "devlock"\n'
    )
    proc = vmbuild_cli("lock", spec, cwd=tmp_path)
    line = one_error_line(proc, f"lock file {dev} is a special file")
    assert proc.returncode == 2, line
    assert stat.S_ISCHR(dev.lstat().st_mode)
    no_parts(tmp_path)
