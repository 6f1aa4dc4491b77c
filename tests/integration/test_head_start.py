"""Through the CLI: a build on a base whose layers' checks are remembered copies them into
--out's part file ahead (oci.headstart) and writes the same bytes as a build that does
not; Ctrl-C after the copy began leaves the old --out, no part file and no thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import run_in_process
from tests.support.images import image_from_layers, layer_tar
from vmbuild import cache
from vmbuild.builders import build_image
from vmbuild.oci import headstart


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the base is seconds old, not minutes
    layers = [
        layer_tar(tmp_path / f"l{i}.tar", [("d", "d", ""), (f"d/f{i}", "f", os.urandom(300_000))])
        for i in range(2)
    ]
    base = image_from_layers(tmp_path / "base.tar", layers)
    time.sleep(0.02)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("hi\n")
    path = tmp_path / "spec.toml"
    path.write_text(f'name = "hs"\ntag = "t"\nfromImage = "{base}"\ncopyToRoot = "root"\n')
    return path


def _cli(spec: Path, out: Path) -> int:
    """``vmbuild build`` in this process (what the tests patch holds in it)."""
    argv = ["build", str(spec), "--out", str(out), "--compress", "none"]
    return run_in_process(
        argv, {"VMBUILD_CACHE_DIR": os.environ["VMBUILD_CACHE_DIR"]}, out.parent
    ).returncode


def _build(spec: Path, out: Path) -> None:
    assert _cli(spec, out) == 0


def _started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    copied: list[int] = []
    real = headstart.HeadStart.start

    def start(self: headstart.HeadStart, layers: list[object]) -> None:
        real(self, layers)  # type: ignore[arg-type]
        copied.append(len(self._ahead))

    monkeypatch.setattr(headstart.HeadStart, "start", start)
    return copied


def test_copied_ahead_the_output_is_the_same(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first.tar"
    _build(spec, first)  # checks the base (and remembers it)
    copied = _started(monkeypatch)
    second = tmp_path / "second.tar"
    _build(spec, second)
    _build(spec, second)  # over an older output: swapped into place
    assert copied == [2, 2]  # both base layers copied ahead, each time
    assert second.read_bytes() == first.read_bytes()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


def test_ctrl_c_after_the_copy_began_leaves_the_old_output(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.tar"
    _build(spec, out)
    before = out.read_bytes()
    copied = _started(monkeypatch)

    def interrupted(*a: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build_image, "gather", interrupted)
    assert _cli(spec, out) == 130 and copied == [2]
    assert out.read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]
    assert threading.active_count() == 1
