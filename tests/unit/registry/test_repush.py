"""registry/repush: what a push made is remembered by the image file's identity, and
``vmbuild push`` loads only what the one-HEAD check needs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.imports import loaded_of
from vmbuild.cli import registry as cli_registry
from vmbuild.oci.compress import COMPRESSIONS
from vmbuild.oci.layout import MT_OCI_MANIFEST
from vmbuild.registry import repush


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))


def test_remembered_by_identity_and_options(tmp_path: Path) -> None:
    image = tmp_path / "a.tar"
    image.write_bytes(b"x" * 10)
    pushed = repush.Pushed("sha256:" + "a" * 64, MT_OCI_MANIFEST, 3)
    repush.remember(repush.identity(image), "gzip", None, pushed)
    assert repush.recall(image, "gzip", None) == pushed
    assert repush.recall(image, "gzip", 6) is None
    assert repush.recall(image, "zstd", None) is None
    time.sleep(0.05)  # past the file system clock's tick
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, but ctime moves on
    assert repush.recall(image, "gzip", None) is None
    assert repush.recall(tmp_path / "missing.tar", "gzip", None) is None


def test_a_layout_is_known_by_its_index(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text("{}")
    pushed = repush.Pushed("sha256:" + "b" * 64, MT_OCI_MANIFEST, 2)
    repush.remember(repush.identity(layout), "gzip", None, pushed)
    assert repush.recall(layout, "gzip", None) == pushed
    time.sleep(0.05)
    (layout / "index.json").write_text("{}")
    assert repush.recall(layout, "gzip", None) is None


def test_a_damaged_record_is_no_record(tmp_path: Path) -> None:
    image = tmp_path / "a.tar"
    image.write_bytes(b"x")
    repush.remember(
        repush.identity(image), "gzip", None, repush.Pushed("sha256:" + "c" * 64, "m", 1)
    )
    (record,) = (tmp_path / "cache" / "pushed").iterdir()
    record.write_text('{"digest": 1}')
    assert repush.recall(image, "gzip", None) is None


def test_cli_choices_are_the_compressions() -> None:
    assert set(cli_registry.COMPRESSIONS) == set(COMPRESSIONS)


def test_push_imports_only_what_it_needs() -> None:
    """Before it knows whether the registry has the image, the push command has loaded
    no builder, VM, Debian, spec, archive or compression code, nor what it would use."""
    heavy = ("vmbuild.vm", "vmbuild.builders", "vmbuild.debian", "vmbuild.config",
             "vmbuild.oci.compress", "vmbuild.oci.reader", "vmbuild.oci.output",
             "vmbuild.registry.push", "vmbuild.registry.blobs", "vmbuild.run", "tomllib",
             "tarfile", "zstandard", "isal", "importlib.metadata", "urllib.request",
             "subprocess", "difflib")  # fmt: skip
    # the module the push asks first, and main's push --help
    code = "from vmbuild.registry import repush\nfrom vmbuild.__main__ import main\n"
    code += "main(['push', '--help'])\n"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    assert loaded_of(code, heavy, env) == []
