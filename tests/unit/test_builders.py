"""The builders' table: one Builder per function the spec loader knows."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support.imports import loaded_of
from vmbuild.builders import BUILDERS, stream
from vmbuild.config import PARSERS, parse_table
from vmbuild.errors import SpecError


def test_every_function_a_spec_can_name_has_a_builder() -> None:
    assert set(BUILDERS) == set(PARSERS)


def test_the_layered_functions_stream_and_write_layouts() -> None:
    layered = {
        "buildLayeredImage",
        "streamLayeredImage",
        "buildNixShellImage",
        "streamNixShellImage",
    }
    streaming = {name for name, builder in BUILDERS.items() if builder.stream is not None}
    assert streaming == layered
    layouts = {name for name, builder in BUILDERS.items() if builder.layout}
    assert layouts == {"buildImage", *layered}


def test_stream_refuses_a_function_that_does_not_stream(tmp_path: Path) -> None:
    loaded = parse_table({"name": "x"}, "spec", tmp_path)
    sink = io.BytesIO()
    with pytest.raises(
        SpecError, match="streamLayeredImage and streamNixShellImage specs, not buildImage"
    ):
        stream(loaded, sink)
    assert sink.getvalue() == b""


def test_the_table_loads_no_vm_or_registry_code() -> None:
    assert loaded_of("import vmbuild.builders", ("vmbuild.vm", "vmbuild.registry")) == []
