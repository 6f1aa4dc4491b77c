"""A base image read by a second build is not checked again while its file is
unchanged (the builders keep layercheck's memo in the user's cache), and is checked
again, and refused, once its bytes change in place, even with its mtime put back."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import vmbuild
from tests.support.images import image_from_layers, layer_tar
from vmbuild import cache
from vmbuild.errors import ImageError
from vmbuild.oci import layercheck


def test_a_second_build_trusts_an_unchanged_base_and_refuses_a_changed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_NS", 0)  # the base is seconds old, not minutes
    payload = b"a" * 50_000
    layer = layer_tar(tmp_path / "l.tar", [("etc", "d", ""), ("etc/data", "f", payload)])
    base = image_from_layers(tmp_path / "base.tar", [layer])
    time.sleep(0.02)
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"
    vmbuild.build_image(name="top", tag="t", from_image=str(base), out=first, compress="none")
    assert list((tmp_path / "cache" / layercheck.MEMO_KIND).iterdir())

    real_check = layercheck.check_layer
    calls: list[str] = []

    def counted(*a: object, **kw: object) -> object:
        calls.append(str(a[2]))
        return real_check(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(layercheck, "check_layer", counted)
    vmbuild.build_image(name="top", tag="t", from_image=str(base), out=second, compress="none")
    assert calls == [] and second.read_bytes() == first.read_bytes()

    data = base.read_bytes()
    at = data.index(payload)
    st = os.stat(base)
    with open(base, "r+b") as f:
        f.seek(at)
        f.write(b"b" * len(payload))
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ImageError, match="not its diff_id"):
        vmbuild.build_image(name="top", tag="t", from_image=str(base), out=second, compress="none")
    assert calls and second.read_bytes() == first.read_bytes()  # the old output is kept
