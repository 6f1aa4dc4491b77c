"""A verified Release is checked as apt checks it: the suite asked for (its Suite or
Codename), not past its Valid-Until (unless checkValidUntil = false), hashes listed."""

from __future__ import annotations

import pytest

from vmbuild.debian.http import MirrorError
from vmbuild.debian.release import read_release

NOW = 1796083200.0  # Tue, 01 Dec 2026 00:00:00 UTC
SUM = " " + "a" * 64 + " 10 main/binary-amd64/Packages.gz\n"


def _release(**fields: str) -> bytes:
    head = {"Suite": "testing", "Codename": "forky", "Date": "Tue, 01 Dec 2026 00:00:00 UTC"}
    head.update(fields)
    text = "".join(f"{k}: {v}\n" for k, v in head.items() if v)
    return (text + "SHA256:\n" + SUM).encode()


def _read(text: bytes, suite: str = "testing", check: bool = True) -> object:
    return read_release(text, suite, "http://m/dists/x/InRelease", check, NOW)


def test_a_current_release_of_the_suite_is_read() -> None:
    for suite in ("testing", "forky"):  # its Suite or its Codename
        info = read_release(_release(), suite, "u", True, NOW)
        assert info.suite == suite and "main/binary-amd64/Packages.gz" in info.files
    _read(_release(**{"Valid-Until": "Wed, 02 Dec 2026 00:00:00 UTC"}))
    _read(_release(Suite="", Codename=""))  # (neither given: nothing to compare)
    read_release(_release(), "forky/updates", "u", True, NOW)  # (as apt: before the "/")


def test_another_suites_release_is_refused() -> None:
    """s2-suitemismatch: 'Suite: oldstable' under dists/testing was accepted."""
    with pytest.raises(MirrorError, match="the Release of oldstable / bookworm, not of testing"):
        _read(_release(Suite="oldstable", Codename="bookworm"))


def test_an_expired_release_is_refused_unless_told() -> None:
    """s2-expired: 'Valid-Until: Thu, 01 Jan 2015' was accepted silently."""
    old = _release(**{"Valid-Until": "Thu, 01 Jan 2015 00:00:00 UTC"})
    with pytest.raises(MirrorError, match="expired on Thu, 01 Jan 2015") as err:
        _read(old)
    assert "checkValidUntil = false" in str(err.value)
    _read(old, check=False)  # a snapshot mirror
    with pytest.raises(MirrorError, match="not a date"):
        _read(_release(**{"Valid-Until": "someday"}))


def test_a_release_without_usable_hashes_is_refused() -> None:
    with pytest.raises(MirrorError, match="lists no SHA256"):
        _read(b"Suite: testing\n")
    with pytest.raises(MirrorError, match="malformed SHA256"):
        _read(b"Suite: testing\nSHA256:\n " + b"a" * 64 + b" big name\n")
