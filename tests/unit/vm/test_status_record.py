"""The root step's status record (guest/root-step writes it, vm/steps.py reads it)."""

from __future__ import annotations

import pytest

from vmbuild.vm.steps import OUT_FULL, SCRIPT_FAILED, StageOutcome, read_record


def test_each_stage_that_ended_has_its_outcome() -> None:
    text = "setup 0\nrunAsRoot 0\nextraCommands 0\npack 1 out-full\n"
    assert read_record(text) == [
        StageOutcome("setup", 0),
        StageOutcome("runAsRoot", 0),
        StageOutcome("extraCommands", 0),
        StageOutcome("pack", 1, OUT_FULL),
    ]


def test_a_failed_script_is_the_last_line() -> None:
    assert read_record("setup 0\nrunAsRoot 42\n")[-1] == StageOutcome("runAsRoot", 42)


def test_a_failed_maintainer_script_is_named_in_its_stage_line() -> None:
    got = read_record("setup 0\nconfigure 7 script-failed vmb-bad preinst 7\n")[-1]
    assert got == StageOutcome("configure", 7, SCRIPT_FAILED, ("vmb-bad", "preinst", "7"))


@pytest.mark.parametrize("garbled", ["setup\n", "setup zero\n"])
def test_a_garbled_record_is_refused(garbled: str) -> None:
    with pytest.raises(ValueError):
        read_record(garbled)
