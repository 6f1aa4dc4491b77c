"""The errors of a root step's VM name what the user wrote: the stage that ran out of
time (configure = true, runAsRoot, extraCommands), not always runAsRoot."""

from __future__ import annotations

import pytest

from vmbuild.errors import VmError
from vmbuild.vm import steps
from vmbuild.vm.faults import VmTimeout


def _timed_out(stage: str | None, step: str = "runAsRoot", phase: str = "command") -> str:
    with pytest.raises(VmError) as caught, steps._bounded(step):
        raise VmTimeout("x", "y", seconds=90, ran=93.5, phase=phase, stage=stage)
    assert caught.value.hint and "--timeout" in caught.value.hint
    return caught.value.message


def test_a_hanging_postinst_is_named_as_configure() -> None:
    message = _timed_out("configure")
    assert message.startswith("configure = true (the Debian packages' maintainer scripts) ")
    assert "did not finish within the 90 s timeout: stopped after 93.5 s" in message
    assert "runAsRoot" not in message


@pytest.mark.parametrize(
    ("stage", "named"),
    [
        ("runAsRoot", "runAsRoot did not finish"),
        ("extraCommands", "extraCommands did not finish"),
        ("setup", "runAsRoot did not finish (while stacking the base image's layers)"),
        ("pack", "runAsRoot did not finish (while packing the result)"),
        (None, "runAsRoot did not finish"),
        ("bogus", "runAsRoot did not finish"),
    ],
)
def test_each_stage_is_named(stage: str | None, named: str) -> None:
    assert _timed_out(stage).startswith(named)


def test_exports_merge_and_a_boot_keep_the_steps_name() -> None:
    merge = "exportImage's merge in the VM (mergeInVM)"
    assert _timed_out("pack", merge).startswith(f"{merge} did not finish (while packing")
    boot = _timed_out(None, phase="boot")
    assert boot.startswith("the build VM for runAsRoot did not boot within the 90 s timeout")
