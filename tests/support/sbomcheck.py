"""Validating SBOMs with the reference libraries, imported when first needed: the
CycloneDX JSON validator pulls in jsonschema's IRI grammar (about 2.5 s of CPU to
build), which every collection of the suite (each xdist worker's) would otherwise pay."""

from __future__ import annotations

from pathlib import Path


def spdx_problems(path: Path) -> list[object]:
    """What spdx-tools finds wrong with the SPDX document at ``path`` ([] if valid)."""
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    return list(validate_full_spdx_document(parse_file(str(path))))


def cyclonedx_problem(text: str) -> object:
    """The first CycloneDX 1.5 schema error in ``text`` (None if valid)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
