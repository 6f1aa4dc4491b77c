"""buildLayeredImage / streamLayeredImage spec parsing and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.helpers import set_uid

from vmbuild.config.common import Fields
from vmbuild.config.layered import (
    MAX_LAYERS_DEFAULT,
    MIN_LAYER_SIZE_DEFAULT,
    ClosureItem,
    LayeredSpec,
    parse,
)
from vmbuild.errors import SpecError
from vmbuild.units.helpers import Helper


def spec(table: dict[str, Any], base: Path = Path("/specs")) -> LayeredSpec:
    return parse(Fields({"name": "demo", **table}, "demo.toml", base), "streamLayeredImage")


def test_defaults(fs: FakeFilesystem) -> None:
    s = spec({})
    assert s.max_layers == MAX_LAYERS_DEFAULT == 100
    assert s.min_layer_size == MIN_LAYER_SIZE_DEFAULT
    assert s.created == "1970-01-01T00:00:01Z"
    assert s.contents == () and s.tag is None and s.streaming
    assert s.architecture


def test_contents_kinds(fs: FakeFilesystem) -> None:
    fs.create_file("/specs/root/etc/motd", contents="hi")
    fs.create_file("/usr/bin/prog", contents=b"\x7fELF\x02\x01\x01")
    s = spec(
        {
            "contents": [
                "root",
                "binSh",
                {"path": "/usr/bin/prog", "closure": True},
                {"path": "root", "closure": False},
            ]
        }
    )
    root, helper, closure, again = s.contents
    assert str(root) == str(again) == "/specs/root"
    assert helper == Helper("binSh")
    assert isinstance(closure, ClosureItem) and str(closure.path) == "/usr/bin/prog"


def test_a_single_item_is_a_list(fs: FakeFilesystem) -> None:
    fs.create_dir("/specs/root")
    assert [str(p) for p in spec({"contents": "root"}).contents] == ["/specs/root"]


@pytest.mark.parametrize("value", [1, 126, 0, -3])
def test_max_layers_out_of_range(fs: FakeFilesystem, value: int) -> None:
    with pytest.raises(SpecError, match="maxLayers"):
        spec({"maxLayers": value})


@pytest.mark.parametrize("value", [2, 125])
def test_max_layers_bounds_accepted(fs: FakeFilesystem, value: int) -> None:
    assert spec({"maxLayers": value}).max_layers == value


def test_closure_of_a_non_elf_file(fs: FakeFilesystem) -> None:
    fs.create_file("/usr/bin/script", contents="#!/bin/sh\necho hi\n")
    with pytest.raises(SpecError, match="not an ELF file"):
        spec({"contents": [{"path": "/usr/bin/script", "closure": True}]})


def test_missing_contents(fs: FakeFilesystem) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        spec({"contents": ["nothere"]})


def test_unreadable_contents(fs: FakeFilesystem) -> None:
    fs.create_file("/specs/secret", contents="x", st_mode=0o100000)
    set_uid(1000)  # pyfakefs lets root read anything
    with pytest.raises(SpecError, match="not readable"):
        spec({"contents": ["secret"]})


def test_bad_item_table(fs: FakeFilesystem) -> None:
    with pytest.raises(SpecError, match="unknown key 'closur'"):
        spec({"contents": [{"path": "/x", "closur": True}]})
    with pytest.raises(SpecError, match="closure true or false"):
        spec({"contents": [{"path": "/x", "closure": "yes"}]})
    with pytest.raises(SpecError, match="must be a path"):
        spec({"contents": [3]})


def test_unknown_argument(fs: FakeFilesystem) -> None:
    with pytest.raises(SpecError, match="unknown argument 'maxLayer'"):
        spec({"maxLayer": 3})


def test_min_layer_size(fs: FakeFilesystem) -> None:
    assert spec({"minLayerSize": 0}).min_layer_size == 0
    with pytest.raises(SpecError, match="minLayerSize"):
        spec({"minLayerSize": -1})


def test_commands_and_flags(fs: FakeFilesystem) -> None:
    s = spec(
        {
            "extraCommands": "mkdir tmp",
            "fakeRootCommands": "chown 1:1 tmp",
            "enableFakechroot": True,
            "tag": "v1",
            "created": "2024-05-01T12:00:00+02:00",
        }
    )
    assert (s.extra_commands, s.fake_root_commands, s.enable_fakechroot) == (
        "mkdir tmp",
        "chown 1:1 tmp",
        True,
    )
    assert s.tag == "v1" and s.created == "2024-05-01T10:00:00Z"


def test_config_is_checked(fs: FakeFilesystem) -> None:
    with pytest.raises(SpecError, match="config"):
        spec({"config": {"Cmd": {"not": "a list"}}})
