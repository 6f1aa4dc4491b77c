"""The one set of image-reference rules: spec names and registry references agree."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmbuild
from vmbuild.errors import SpecError
from vmbuild.oci.names import DIGEST_RE, check_name, check_pinned_digest, check_tag
from vmbuild.registry.reference import parse_repository

GOOD = ["app", "team/app", "localhost/app", "127.0.0.1:5000/a/b", "[::1]:5000/x", "a.b/c_d"]
BAD = ["App", "team//app", "-app", "a/b:tag", "a@sha256:00", "host.example:5000/Up"]


@pytest.mark.parametrize("name", GOOD)
def test_a_valid_name_is_valid_for_specs_and_the_registry(name: str) -> None:
    assert check_name(name, "spec") == name
    parse_repository(name)


@pytest.mark.parametrize("name", BAD)
def test_an_invalid_name_is_refused_by_both(name: str) -> None:
    with pytest.raises(SpecError, match="is not a valid image name"):
        check_name(name, "spec")
    with pytest.raises(SpecError, match="not a valid"):
        parse_repository(name)


def test_tag_and_digest_messages_name_where() -> None:
    with pytest.raises(SpecError, match=r"spec: tag .\.x. is not a valid tag"):
        check_tag(".x", "spec: tag")
    with pytest.raises(SpecError, match="lowercase hex"):
        check_pinned_digest("sha256:" + "AB" * 32, "imageDigest")
    assert check_pinned_digest("sha256:" + "ab" * 32, "imageDigest")


def test_one_digest_pattern() -> None:
    package = Path(vmbuild.__file__).parent
    defining = [p for p in package.rglob("*.py") if "DIGEST_RE = " in p.read_text()]
    assert defining == [package / "oci" / "names.py"]
    assert DIGEST_RE.match("sha256:" + "0" * 64)
