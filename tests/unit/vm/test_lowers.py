"""Lower images: what ext4image makes under fakeroot (read back with debugfs), the plan
for more layers than disks, the cache (chain ids, corrupt entries), unconvertible layers."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.images import layer_tar
from tests.support.rootbase import CAP, LAYERS, member_tar
from vmbuild import cache, cachelist
from vmbuild.errors import ImageError
from vmbuild.oci.digest import of_file
from vmbuild.oci.image import BlobRef, Layer
from vmbuild.vm import lowers


def _layers(paths: list[Path]) -> list[Layer]:
    return [Layer(of_file(p), BlobRef.whole(p), "none") for p in paths]


def _debugfs(image: Path, request: str) -> str:
    return subprocess.run(
        ["/usr/sbin/debugfs", "-R", request, str(image)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def lower_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("staged_by", ["this user", "another user"])
def test_a_layer_becomes_an_ext4_lower_with_every_attribute(
    tmp_path: Path, lower_cache: Path, monkeypatch: pytest.MonkeyPatch, staged_by: str
) -> None:
    from vmbuild.vm import ext4image

    if staged_by == "another user":  # no staged owner matches: debugfs sets every one
        real_init = ext4image.Stager.__init__

        def init(self: ext4image.Stager, *a: object) -> None:
            real_init(self, *a)  # type: ignore[arg-type]
            self._owner = ext4image.Staged(12345, 12345)

        monkeypatch.setattr(ext4image.Stager, "__init__", init)
    paths = [member_tar(tmp_path / f"l{n}.tar", m) for n, m in enumerate(LAYERS)]
    images = lowers.images(_layers(paths), tmp_path, 5)
    assert len(images) == 3
    bottom, middle, _ = images
    stat_ping = _debugfs(bottom, "stat /l/bin/ping")
    assert "Mode:  04755" in stat_ping and "User:     0" in stat_ping
    assert "security.capability (20) = " + " ".join(f"{b:02x}" for b in CAP) in _debugfs(
        bottom, "ea_list /l/bin/ping"
    )
    sh = _debugfs(bottom, "stat /l/bin/sh-like")
    assert "Mode:  0755" in sh and "User:     0   Group:     0" in sh
    keep = _debugfs(bottom, "stat /l/etc/keep")
    assert "User:     7   Group:     8" in keep and "Mode:  0600" in keep
    nodes = _debugfs(bottom, "ls -l /l/nodes")
    assert " 20666 (3)      0      0 " in nodes  # the character device 1:3
    assert " 60660 (4)      0      6 " in nodes  # the block device
    assert " 10644 (5) " in nodes  # the FIFO
    srv = _debugfs(bottom, "ls -l /l/srv")
    inodes = {line.split()[-1]: line.split()[0] for line in srv.splitlines() if line.strip()}
    assert inodes["a"] == inodes["b"]  # one inode: a hard link
    assert "40750 (2)     33     33" in _debugfs(bottom, "ls -l /l")
    # the second layer: whiteouts are 0:0 devices, the replaced directory is opaque
    # (written as whiteouts of each lower name, as the host merge sees it)
    etc = _debugfs(middle, "ls -l /l/etc")
    assert any(" 20000 (3) " in ln and ln.endswith("gone") for ln in etc.splitlines())
    assert "old" in _debugfs(middle, "ls -l /l/opt")
    # cached: asking again makes nothing (the images are the same files)
    assert lowers.images(_layers(paths), tmp_path, 5) == images


def test_a_corrupt_cache_entry_is_made_again(tmp_path: Path, lower_cache: Path) -> None:
    path = layer_tar(tmp_path / "l.tar", [("a", "f", "A")])
    (image,) = lowers.images(_layers([path]), tmp_path, 5)
    size = image.stat().st_size
    with open(image, "r+b") as f:
        f.truncate(4096)
    (again,) = lowers.images(_layers([path]), tmp_path, 5)
    assert again.stat().st_size == size
    assert "a" in _debugfs(again, "ls /l")


def test_a_lower_a_build_uses_is_kept_by_prune(tmp_path: Path, lower_cache: Path) -> None:
    path = layer_tar(tmp_path / "l.tar", [("a", "f", "A")])
    with cache.holding():
        (image,) = lowers.images(_layers([path]), tmp_path, 5)
        removed, busy = cachelist.prune(older_than=None, max_size=0)
        assert image.parent in [e.path for e in busy] and image.is_file()
    removed, busy = cachelist.prune(older_than=None, max_size=0)
    assert image.parent in [e.path for e in removed] and not image.exists()


def test_more_layers_than_disks_merge_the_bottom_ones(tmp_path: Path) -> None:
    paths = [layer_tar(tmp_path / f"l{i}.tar", [(f"f{i}", "f", str(i))]) for i in range(20)]
    groups = lowers.plan(_layers(paths), max_disks=16)
    assert len(groups) == 16
    assert (groups[0].first, groups[0].last) == (0, 4)
    assert [(g.first, g.last) for g in groups[1:]] == [(i, i) for i in range(5, 20)]
    # a lower's key is its chain: the same layer on another base is another lower
    other = lowers.plan(_layers([paths[1], paths[5]]), 16)
    assert other[1].key != groups[1].key


def test_an_unconvertible_layer_is_named_and_nothing_is_cached(
    tmp_path: Path, lower_cache: Path
) -> None:
    good = layer_tar(tmp_path / "ok.tar", [("a", "f", "A")])
    bad = layer_tar(tmp_path / "bad.tar", [("a/x", "f", "X")])  # below a file
    with pytest.raises(ImageError, match="base layer 2: a/x is below a"):
        lowers.images(_layers([good, bad]), tmp_path, 5)
    made = sorted(p.name for p in (lower_cache / "lowers").iterdir() if not p.name.startswith("."))
    assert made == [lowers.plan(_layers([good]), 5)[0].key]  # only the good one


def test_an_interrupted_conversion_leaves_nothing_behind(
    tmp_path: Path, lower_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmbuild.vm import ext4image

    path = layer_tar(
        tmp_path / "l.tar", [("d", "d", ""), *((f"d/f{i}", "f", "x") for i in range(9))]
    )
    real = ext4image.Stager.addfile
    seen = []

    def interrupted(self: ext4image.Stager, *args: object, **kw: object) -> None:
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt  # Ctrl-C halfway through the staging
        real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ext4image.Stager, "addfile", interrupted)
    work = tmp_path / "work"
    work.mkdir()
    staging_roots = [lowers.RAM, Path(tempfile.gettempdir())]
    before = {p for root in staging_roots for p in root.glob("vmbuild-lower-*")}
    with pytest.raises(KeyboardInterrupt), cache.holding():  # (a build)
        lowers.images(_layers([path]), work, 5)
    assert list((lower_cache / "lowers").iterdir()) == []  # no entry, temporary one or lock
    assert list(work.iterdir()) == []  # no staging tree
    after = {p for root in staging_roots for p in root.glob("vmbuild-lower-*")}
    assert after <= before  # nor one in memory or TMPDIR
