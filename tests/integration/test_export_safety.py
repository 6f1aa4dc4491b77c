"""exportImage where names go through symlinks or non-directories, and odd whiteouts.

The reference is ``umoci unpack`` of the same OCI layout, entry by entry.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.export_cases import (
    CASES,
    REFUSED,
    ROOT_OPAQUE,
    Stack,
    assert_no_member_below_a_non_directory,
    combined,
    oci_layout,
    rootfs_tree,
    tar_tree,
    umoci_unpack,
)


def export(tmp_path: Path, layout: Path, extra: str = "", name: str = "export.tar") -> Path:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f'function = "exportImage"\nfromImage = "{layout}"\n{extra}')
    out = tmp_path / name
    proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def agrees_with_umoci(tmp_path: Path, stack: Stack) -> Path:
    layout = oci_layout(tmp_path / "image", stack)
    out = export(tmp_path, layout)
    assert_no_member_below_a_non_directory(out)
    proc = umoci_unpack(layout, tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    want = rootfs_tree(tmp_path / "bundle" / "rootfs")
    got = tar_tree(out)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
    return out


@pytest.mark.tools
@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_umoci(tmp_path: Path, case: str) -> None:
    agrees_with_umoci(tmp_path, CASES[case])


@pytest.mark.tools
def test_root_level_opaque_hides_every_lower_file(tmp_path: Path) -> None:
    out = agrees_with_umoci(tmp_path, ROOT_OPAQUE)
    tree = tar_tree(out)
    assert sorted(tree) == ["again", "again/x", "fresh", "keep", "keep/new"]
    assert tree["keep"][1] == 0o700  # it held keep/new when the marker came: kept as it was
    assert tree["again"][1] == 0o755  # hidden, then made again to hold again/x


@pytest.mark.tools
def test_all_cases_in_one_image_agree_with_umoci(tmp_path: Path) -> None:
    agrees_with_umoci(tmp_path, combined())


def test_symlink_then_child_never_gives_both(tmp_path: Path) -> None:
    for case in ("abs_link_then_child", "link_then_child_one_layer", "hard_link_through_link"):
        out = export(tmp_path, oci_layout(tmp_path / case, CASES[case]), name=f"{case}.tar")
        tree = tar_tree(out)
        assert tree["a"] == ("l", 0, 0, 0, "/tmp") and "a/x" not in tree
        assert tree["tmp"] == ("d", 0o755, 0, 0, "") and tree["tmp/x"][0] == "f"
        assert_no_member_below_a_non_directory(out)


def test_child_then_link_in_one_layer_keeps_only_the_link(tmp_path: Path) -> None:
    out = export(tmp_path, oci_layout(tmp_path / "image", CASES["child_then_link_one_layer"]))
    assert tar_tree(out) == {"a": ("l", 0, 0, 0, "/tmp")}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("in_vm", [False, True], ids=["host", "vm"])
def test_refused_with_one_line(tmp_path: Path, case: str, in_vm: bool) -> None:
    """Refused before any VM boots, by both merges."""
    stack, message, _ = REFUSED[case]
    layout = oci_layout(tmp_path / "image", stack)
    spec = tmp_path / "export.toml"
    extra = "mergeInVM = true\n" if in_vm else ""
    spec.write_text(f'function = "exportImage"\nfromImage = "{layout}"\n{extra}')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.tools
@pytest.mark.parametrize("case", sorted(c for c, (_, _, umoci) in REFUSED.items() if umoci))
def test_umoci_refuses_them_too(tmp_path: Path, case: str) -> None:
    proc = umoci_unpack(oci_layout(tmp_path / "image", REFUSED[case][0]), tmp_path / "bundle")
    assert proc.returncode != 0


def test_a_symlink_is_0777_whatever_mode_its_layer_stored(tmp_path: Path) -> None:
    """As the build VM's merge (mergeInVM, Linux's own symlinks) gives it: both merges
    give the same bytes (tests/vm/test_export_safety_vm.py compares them)."""
    out = export(tmp_path, oci_layout(tmp_path / "image", CASES["link_stored_0644"]))
    with tarfile.open(out) as tar:
        link = tar.getmember("b")
    assert link.issym() and link.mode == 0o777
