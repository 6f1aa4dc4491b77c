"""How copyToRoot paths merge into a layer tree (pyfakefs)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuild.errors import SpecError
from vmbuild.oci.tree import Tree, from_roots


def kinds(tree: Tree) -> dict[str, str]:
    out = {}
    for name in tree.sorted_names():
        mode = tree.entries[name].stat().st_mode
        out[name] = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "f"
    return out


def test_contents_of_each_root_merge_like_rsync(fs: FakeFilesystem) -> None:
    fs.create_file("/a/bin/x", contents="a")
    fs.create_file("/a/etc/conf", contents="old")
    fs.create_file("/b/etc/conf", contents="new")
    fs.create_file("/b/etc/other")
    tree = from_roots([Path("/a"), Path("/b")])
    assert kinds(tree) == {"bin": "d", "bin/x": "f", "etc": "d", "etc/conf": "f", "etc/other": "f"}
    assert tree.entries["etc/conf"].host == Path("/b/etc/conf")


def test_names_sort_by_component(fs: FakeFilesystem) -> None:
    for name in ("a-b", "a/b", "a.b", "a/a"):
        fs.create_file(f"/r/{name}")
    assert from_roots([Path("/r")]).sorted_names() == ["a", "a/a", "a/b", "a-b", "a.b"]


def test_file_replacing_a_directory_drops_its_children(fs: FakeFilesystem) -> None:
    fs.create_file("/a/x/inner")
    fs.create_file("/b/x", contents="file")
    tree = from_roots([Path("/a"), Path("/b")])
    assert kinds(tree) == {"x": "f"}


def test_dirlinks_become_directories_by_default(fs: FakeFilesystem) -> None:
    fs.create_file("/real/lib/libfoo.so")
    fs.create_symlink("/src/lib", "/real/lib")
    tree = from_roots([Path("/src")], keep_dirlinks=False)
    assert kinds(tree) == {"lib": "d", "lib/libfoo.so": "f"}


def test_keep_dirlinks_keeps_the_link_and_merges_into_its_target(fs: FakeFilesystem) -> None:
    fs.create_dir("/a/usr/lib")
    fs.create_symlink("/a/lib", "usr/lib")
    fs.create_file("/b/lib/libbar.so")
    tree = from_roots([Path("/a"), Path("/b")], keep_dirlinks=True)
    assert kinds(tree) == {"lib": "l", "usr": "d", "usr/lib": "d", "usr/lib/libbar.so": "f"}


def test_a_single_file_root_lands_at_the_top(fs: FakeFilesystem) -> None:
    fs.create_file("/x/hello.txt")
    assert kinds(from_roots([Path("/x/hello.txt")])) == {"hello.txt": "f"}


def test_missing_root_is_a_spec_error(fs: FakeFilesystem) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        from_roots([Path("/nope")])


def test_symlink_loop_is_reported(fs: FakeFilesystem) -> None:
    fs.create_dir("/r/d")
    fs.create_symlink("/r/d/loop", "/r/d")
    with pytest.raises(SpecError, match="loop"):
        from_roots([Path("/r")])
