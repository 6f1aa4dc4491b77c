"""buildNixShellImage / streamNixShellImage spec parsing: the recipe's variables and
the checks on bad input."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from vmbuild.config.common import Fields
from vmbuild.config.layered import ClosureItem
from vmbuild.config.nixshell import NixShellSpec, parse
from vmbuild.debian.lock import Request
from vmbuild.errors import SpecError

ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 60


def spec(table: dict[str, Any], function: str = "buildNixShellImage") -> NixShellSpec:
    return parse(Fields(table, "s.toml", Path("/specs")), function)


@pytest.fixture
def host(fs: FakeFilesystem) -> FakeFilesystem:
    fs.create_file("/usr/bin/bash", contents=ELF, st_mode=0o100755)
    fs.create_file("/usr/bin/make", contents=ELF, st_mode=0o100755)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("hello-1.0/Makefile")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"all"))
    fs.create_file("/specs/hello-1.0.tar.gz", contents=buf.getvalue())
    fs.create_file("/specs/notes.txt", contents="not a tarball")
    fs.create_dir("/specs/srcdir")
    return fs


def test_defaults_follow_the_manual(host: FakeFilesystem) -> None:
    s = spec({"drv": {"pname": "hello", "version": "2.12"}}, "streamNixShellImage")
    assert s.name == "hello-2.12-env" and s.tag is None and s.streaming
    assert (s.uid, s.gid, s.home, str(s.shell)) == (1000, 1000, "/build", "/usr/bin/bash")
    assert s.command is None and s.run is None
    assert s.drv.name == "hello-2.12" and s.drv.outputs == ("out",)
    assert dict(s.drv.variables) == {
        "name": "hello-2.12",
        "outputs": "out",
        "pname": "hello",
        "version": "2.12",
    }


def test_every_key_becomes_a_variable_as_nix_writes_it(host: FakeFilesystem) -> None:
    s = spec(
        {
            "drv": {
                "name": "tool-1",
                "src": "./hello-1.0.tar.gz",
                "nativeBuildInputs": [{"path": "/usr/bin/make", "closure": True}],
                "configureFlags": ["--a", "--b"],
                "doCheck": True,
                "dontStrip": False,
                "jobs": 3,
                "outputs": ["out", "dev"],
                "passAsFile": ["notes"],
                "notes": "n",
            },
            "name": "Custom",
            "tag": "t1",
            "uid": 0,
            "homeDirectory": "/home/me/",
            "run": "make",
        }
    )
    v = dict(s.drv.variables)
    assert v["configureFlags"] == "--a --b" and v["doCheck"] == "1" and v["dontStrip"] == ""
    assert v["jobs"] == "3" and v["outputs"] == "out dev" and v["passAsFile"] == "notes"
    assert "src" not in v and "nativeBuildInputs" not in v
    assert s.drv.src == Path("/specs/hello-1.0.tar.gz")
    assert s.drv.inputs == (("nativeBuildInputs", (ClosureItem(Path("/usr/bin/make")),)),)
    assert s.drv.outputs == ("out", "dev") and s.drv.pass_as_file == ("notes",)
    assert (s.name, s.tag, s.uid, s.home, s.run) == ("custom", "t1", 0, "/home/me", "make")


def test_a_directory_is_a_source(host: FakeFilesystem) -> None:
    assert spec({"drv": {"name": "x", "src": "srcdir"}}).drv.src == Path("/specs/srcdir")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "drv is required and must be a table"),
        ({"drv": "hello"}, "drv must be a table"),
        ({"drv": {}}, "drv needs a name"),
        ({"drv": {"name": ".hidden"}}, "is not a store name"),
        ({"drv": {"name": "x"}, "command": "a", "run": "b"}, "command and run are both given"),
        ({"drv": {"name": "x", "src": "missing.tar"}}, "does not exist"),
        ({"drv": {"name": "x", "src": "notes.txt"}}, "neither a tarball nor a directory"),
        ({"drv": {"name": "x", "buildInputs": ["/nonexistent"]}}, "does not exist"),
        ({"drv": {"name": "x", "buildInputs": [{"deb": 1}]}}, "buildInputs\\[0\\]"),
        ({"drv": {"name": "x", "a": {"b": 1}}}, "cannot be an environment variable"),
        ({"drv": {"name": "x", "passAsFile": ["gone"]}}, "passAsFile names 'gone'"),
        ({"drv": {"name": "x", "outputs": ["a-b"]}}, "not a variable name"),
        ({"drv": {"name": "x"}, "shell": "/specs/notes.txt"}, "is not an executable file"),
        ({"drv": {"name": "x"}, "shell": "/nope"}, "is not an executable file"),
        ({"drv": {"name": "x"}, "homeDirectory": "build"}, "not an absolute path"),
        ({"drv": {"name": "x"}, "User": "x"}, "unknown argument 'User'"),
    ],
)
def test_bad_input_is_one_clear_error(
    host: FakeFilesystem, table: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        spec(table)


def test_a_shell_must_be_a_program(host: FakeFilesystem) -> None:
    host.create_file("/specs/script", contents="#!/bin/sh\n", st_mode=0o100755)
    with pytest.raises(SpecError, match="is not an ELF file"):
        spec({"drv": {"name": "x"}, "shell": "script"})


def test_debian_inputs_bring_the_base_tools_as_packages(host: FakeFilesystem) -> None:
    s = spec({"drv": {"name": "x", "nativeBuildInputs": [{"deb": "gcc"}]}})
    assert s.from_packages and s.tables["deb"] is not None
    assert s.tables["deb"].lock == Path("/specs/s.toml.lock")
    names = [i.name for i in s.contents if isinstance(i, Request)]
    assert names[0] == "bash" and "coreutils" in names and names[-1] == "gcc"
    plain = spec(
        {"drv": {"name": "x", "buildInputs": [{"path": "/usr/bin/make", "closure": True}]}}
    )
    assert not plain.from_packages and plain.contents == (ClosureItem(Path("/usr/bin/make")),)
