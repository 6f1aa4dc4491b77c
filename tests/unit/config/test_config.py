"""Spec validation: every bad input is one SpecError naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmbuild.config import load_spec, parse_table
from vmbuild.config.build_image import BuildImageSpec
from vmbuild.config.common import parse_created
from vmbuild.errors import SpecError
from vmbuild.units.helpers import Helper


def spec(tmp_path: Path, text: str) -> BuildImageSpec:
    path = tmp_path / "image.toml"
    path.write_text(text)
    loaded = load_spec(path)
    assert loaded.function == "buildImage"
    assert isinstance(loaded.spec, BuildImageSpec)
    return loaded.spec


def test_defaults_follow_the_manual(tmp_path: Path) -> None:
    s = spec(tmp_path, 'name = "x"\n')
    assert s.tag is None and s.from_image is None and s.copy_to_root == ()
    assert s.created == "1970-01-01T00:00:01Z"
    assert (s.uid, s.gid, s.disk_size, s.build_vm_memory_size) == (0, 0, 1024, 512)
    assert s.keep_contents_dirlinks is False and s.extra_commands == ""
    assert s.architecture in ("amd64", "arm64")


def test_relative_paths_resolve_against_the_spec(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    s = spec(tmp_path, 'name = "x"\ncopyToRoot = "root"\n')
    assert s.copy_to_root == (tmp_path / "root",)


def test_helpers_and_fakenss_lines(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        'name = "x"\ncopyToRoot = ["binSh", { helper = "fakeNss", '
        'extraPasswdLines = ["a:x:1:1::/:/bin/sh"] }]\n',
    )
    assert s.copy_to_root == (Helper("binSh"), Helper("fakeNss", ("a:x:1:1::/:/bin/sh",), ()))


def test_contents_is_a_deprecated_alias(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with pytest.warns(FutureWarning, match="copyToRoot"):
        s = spec(tmp_path, 'name = "x"\ncontents = ["root"]\n')
    assert s.copy_to_root == (tmp_path / "root",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tag = 'x'\n", "name is required"),
        ('name = "x"\nfrobnicate = 1\n', "unknown argument 'frobnicate'"),
        ('name = "x"\nconfig = { Cmdd = ["x"] }\n', "unknown config key 'Cmdd'"),
        ('name = "x"\nconfig = { Cmd = 1 }\n', "config.Cmd must be a list of strings"),
        ('name = "x"\nconfig = { Env = ["NOEQUALS"] }\n', "lacks '='"),
        ('name = "x"\ncopyToRoot = ["missing"]\n', "missing does not exist"),
        ('name = "x"\nfromImage = "missing.tar"\n', "does not exist"),
        ('name = "x"\ncreated = "yesterday"\n', "not an ISO-8601 date"),
        ('name = "x"\nuid = "0"\n', "uid must be an integer"),
        ('name = "x"\nuid = -1\n', "out of range"),
        ('name = "Up per"\n', "not a valid image name"),
        ('name = "x"\ntag = ".bad"\n', "not a valid tag"),
        ('name = "x"\nfunction = "buildDockerImage"\n', "unknown function"),
        ('name = "x"\nkeepContentsDirlinks = "yes"\n', "must be true or false"),
        ('name = "x"\ncopyToRoot = [{ helper = "nope" }]\n', "unknown helper"),
        ('name = "x"\ncopyToRoot = [{ helper = "binSh", extraGroupLines = [] }]\n', "only fakeNss"),
    ],
)
def test_bad_specs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(tmp_path, text)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"line 2"):
        spec(tmp_path, 'name = "x"\ntag = \n')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1970-01-01T00:00:01Z", "1970-01-01T00:00:01Z"),
        ("2024-05-01", "2024-05-01T00:00:00Z"),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00Z"),
        ("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00.25Z"),
    ],
)
def test_created_is_normalised_to_utc(value: str, expected: str) -> None:
    assert parse_created(value, "spec") == expected


def test_created_now_uses_the_clock() -> None:
    import datetime as dt

    moment = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert parse_created("now", "spec", now=lambda: moment) == "2030-01-02T03:04:05Z"


def test_parse_table_api_camel_names(tmp_path: Path) -> None:
    loaded = parse_table({"name": "x", "buildVMMemorySize": 1024}, "api", tmp_path)
    assert loaded.spec.build_vm_memory_size == 1024
