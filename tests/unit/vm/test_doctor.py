"""`vmbuild doctor` on a host whose cache is empty (nothing is built or probed here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild.vm import doctor, kernel


def test_reports_each_part_with_a_fix_where_something_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernel, "SOURCE", tmp_path / "no-linux-source.tar.xz")
    lines: list[str] = []
    status = doctor.report(out=lines.append)
    text = "\n".join(lines)
    for part in ("qemu:", "mkfs.ext4:", "guest tools:", "guest kernel:", "accelerator:", "cache:"):
        assert part in text, text
    assert "linux-source-6.1" in text and "fix: apt-get install" in text
    assert status == 1 and lines[-1].endswith("see the fixes above")
