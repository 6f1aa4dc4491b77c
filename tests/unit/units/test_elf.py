"""ELF closures as content units, on this host's own programs and libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmbuild.errors import SpecError
from vmbuild.oci.tree import Source, Tree
from vmbuild.units.elf import LibrarySearch, _expand, read_elf, read_ld_so_cache
from vmbuild.units.graph import Graph, config_programs, shebang, tree_of

BASH = "/usr/bin/bash"
pytestmark = pytest.mark.skipif(not os.path.exists(BASH), reason="needs /usr/bin/bash")


def test_read_elf_of_bash() -> None:
    info = read_elf(BASH)
    assert info is not None
    assert info.interp and "ld-linux" in info.interp
    assert "libc.so.6" in info.needed


def test_read_elf_of_a_text_file(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("hello")
    assert read_elf(str(tmp_path / "t")) is None


def test_ld_so_cache_lists_libc() -> None:
    cache = read_ld_so_cache()
    if not cache:
        pytest.skip("no ld.so.cache on this host")
    assert any(p.endswith("/libc.so.6") for p in cache["libc.so.6"])


def test_ld_so_cache_agrees_with_ldconfig() -> None:
    import shutil
    import subprocess

    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/usr/sbin:/sbin")
    if not ldconfig or not read_ld_so_cache():
        pytest.skip("no ldconfig or no cache")
    listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    theirs = {
        (line.split(" (")[0].strip(), line.rsplit("=> ", 1)[1].strip())
        for line in listing.splitlines()[1:]
        if "=> " in line and "hwcap" not in line
    }
    ours = {(name, path) for name, paths in read_ld_so_cache().items() for path in paths}
    assert ours == theirs


def test_origin_expansion() -> None:
    assert _expand("$ORIGIN/../lib", "/opt/app/bin") == "/opt/app/bin/../lib"
    assert _expand("${ORIGIN}/x", "/o") == "/o/x"


def test_bash_closure_units() -> None:
    graph = Graph()
    names = graph.path(BASH, "test")
    real_bash = os.path.realpath(BASH)
    assert names[-1] == real_bash
    closure = {n for n in graph.units}
    libc = [n for n in closure if n.endswith("/libc.so.6") and not os.path.islink(n)]
    assert libc and libc[0] in graph.units[real_bash].refs
    # every entry sits under real directories: parents never go through a symlink
    for unit in graph.units.values():
        for rel in unit.entries:
            parent = "/" + os.path.dirname(rel)
            assert os.path.realpath(parent) == os.path.normpath(parent), rel
    # the interpreter's path works in the image: its links are units too
    info = read_elf(real_bash)
    assert info is not None and info.interp
    for hop in Path(info.interp).parents:
        if hop.is_symlink():
            assert str(hop) in graph.units


def test_missing_library_names_it_and_the_paths_searched() -> None:
    graph = Graph(LibrarySearch(cache={}, defaults={2: ("/nonexistent/lib",)}))
    with pytest.raises(SpecError) as err:
        graph.path(BASH, "contents[0]")
    message = err.value.message
    assert "libc.so.6" in message or "libtinfo.so.6" in message
    assert "/nonexistent/lib" in message and "ld.so.cache" in message
    assert "\n" not in message


def test_script_references_its_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(f"#!{BASH} -e\necho hi\n")
    script.chmod(0o755)
    assert shebang(str(script)) == BASH
    graph = Graph()
    graph.path(str(script), "config")
    assert os.path.realpath(BASH) in graph.units[str(script)].refs


def test_config_programs(tmp_path: Path) -> None:
    config = {"Entrypoint": [BASH, "-c"], "Cmd": ["echo ok", "/nonexistent", BASH, "rel/x"]}
    assert config_programs(config) == [BASH]


@pytest.mark.skipif(not os.path.islink("/bin"), reason="needs a merged-/usr host")
def test_tree_units_move_under_link_targets(tmp_path: Path) -> None:
    sh = tmp_path / "sh"
    sh.symlink_to(BASH)
    graph = Graph()
    graph.path("/bin/bash", "test")  # brings the /bin -> usr/bin link unit
    tree = Tree({"bin": Source(tmp_path), "bin/sh": Source(sh)})
    name = graph.tree("helper:binSh", tree)
    graph.settle_trees([name])
    assert set(graph.units[name].entries) == {"usr/bin/sh"}
    assert graph.provides("/bin/sh")
    merged = tree_of(graph.units.values())
    assert "bin" in merged.entries and "usr/bin/sh" in merged.entries


def _pyelftools_view(path: str) -> tuple[str | None, list[str], list[str], list[str]]:
    from typing import Any

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    interp, needed, rpath, runpath = None, [], [], []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        segments: list[Any] = list(elf.iter_segments())
        for seg in segments:
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                tags: list[Any] = list(section.iter_tags())
                for tag in tags:
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath.append(tag.rpath)
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath.append(tag.runpath)
    return interp, needed, rpath, runpath


def _host_elves(limit: int) -> list[str]:
    found: list[str] = []
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/libexec"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(path)
            if len(found) >= limit:
                return found
    return found


def test_header_reader_agrees_with_pyelftools() -> None:
    from vmbuild.units.elfheaders import read_headers

    paths = _host_elves(60)
    assert paths
    for path in paths:
        with open(path, "rb") as f:
            ours = read_headers(f)
        assert ours is not None, path
        interp, needed, rpath, runpath = _pyelftools_view(path)
        assert (ours.interp, list(ours.needed)) == (interp, needed), path
        assert (list(ours.rpath), list(ours.runpath)) == (rpath, runpath), path


def test_truncated_elf_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(Path(BASH).read_bytes()[:2000])
    with pytest.raises(SpecError, match="cannot read its ELF headers"):
        read_elf(str(broken))


@pytest.mark.skipif(not os.path.islink("/lib"), reason="needs a merged-/usr host")
def test_customisation_tree_does_not_hide_link_units(tmp_path: Path) -> None:
    (tmp_path / "lib" / "extra").mkdir(parents=True)
    (tmp_path / "lib" / "extra" / "f").write_text("x")
    (tmp_path / "etc").mkdir()
    graph = Graph()
    graph.path(BASH, "test")
    assert "/lib" in graph.units  # the interpreter is reached through /lib
    tree = Tree()
    tree.add_root(tmp_path)
    moved = graph.relocate(tree)
    assert "lib" not in moved.entries
    assert {"etc", "usr/lib/extra", "usr/lib/extra/f"} <= set(moved.entries)


def test_links_met_follows_relative_absolute_and_dotdot(tmp_path: Path) -> None:
    from vmbuild.units.graph import links_met

    real = tmp_path / "real"
    (real / "lib").mkdir(parents=True)
    (real / "lib" / "libx.so.1.2").write_text("x")
    (tmp_path / "lib").symlink_to("real/lib")
    (real / "lib" / "libx.so.1").symlink_to("libx.so.1.2")
    (tmp_path / "abs").symlink_to(str(real / "lib" / "libx.so.1"))
    (tmp_path / "up").symlink_to("real/lib/../lib/libx.so.1")
    root = os.path.realpath(tmp_path)
    assert links_met(f"{root}/lib/libx.so.1") == [f"{root}/lib", f"{root}/real/lib/libx.so.1"]
    assert links_met(f"{root}/abs") == [f"{root}/abs", f"{root}/real/lib/libx.so.1"]
    assert links_met(f"{root}/up") == [f"{root}/up", f"{root}/real/lib/libx.so.1"]
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(SpecError, match="too many symlinks"):
        links_met(f"{root}/loop")


def test_library_only_the_cache_knows_brings_the_cache(tmp_path: Path) -> None:
    from vmbuild.units.elf import LD_SO_CACHE, default_dirs

    info = read_elf(os.path.realpath(BASH))
    assert info is not None
    soname = next(n for n in info.needed if n != "libc.so.6")  # libtinfo.so.6 on Debian
    moved = tmp_path / soname
    found = LibrarySearch.host().find(soname, BASH, info)
    moved.write_bytes(Path(found.path).read_bytes())
    search = LibrarySearch(cache={soname: [str(moved)]}, defaults={2: default_dirs(2)})
    hit = search.find(soname, BASH, info)
    assert hit.path == str(moved) and hit.needs_cache
    if not LD_SO_CACHE.exists():
        pytest.skip("no ld.so.cache on this host")
    graph = Graph(search)
    graph.path(BASH, "test")
    assert str(LD_SO_CACHE) in graph.units[os.path.realpath(BASH)].refs
