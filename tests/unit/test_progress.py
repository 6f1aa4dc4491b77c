"""Progress lines: one per finished stage off a terminal, live ones on it, -q, timings."""

from __future__ import annotations

import io

import pytest

from vmbuild import progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_line_per_stage_with_its_time_and_a_summary() -> None:
    out = io.StringIO()
    report = progress.Report(out)
    with report.stage("preparing base layers") as st:
        st.detail("1 of 2")
        st.detail("2 of 2, 1.5 MB made")
    with report.stage("running runAsRoot", streams=True):
        out.write("script output\n")
    report.summary("built x:1", ("running runAsRoot",))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("vmbuild> preparing base layers: 2 of 2, 1.5 MB made (")
    assert lines[1:4] == ["vmbuild> running runAsRoot ...", "script output", lines[3]]
    assert lines[3].startswith("vmbuild> running runAsRoot (") and lines[3].endswith(" s)")
    assert lines[4].startswith("vmbuild> built x:1 in ") and "the build VM" in lines[4]
    assert len(lines) == 5 and "\r" not in out.getvalue()


def test_live_line_on_a_terminal_and_nothing_for_a_failed_stage() -> None:
    out = Tty()
    report = progress.Report(out)
    with pytest.raises(RuntimeError), report.stage("booting the build VM") as st:
        st.detail("halfway")
        raise RuntimeError
    text = out.getvalue()
    assert "\r\x1b[K" in text and "halfway" in text
    assert text.endswith("\r\x1b[K")  # the live line is cleared for the error
    assert not report.active


def test_quiet_prints_nothing_but_timings_when_asked() -> None:
    out = io.StringIO()
    report = progress.Report(out, quiet=True, timings=True)
    with report.stage("packing the new layer"):
        pass
    report.summary("built", ())
    (line,) = out.getvalue().splitlines()
    assert line.startswith("vmbuild> timings: packing_the_new_layer=") and "total=" in line
    silent = io.StringIO()
    quiet = progress.Report(silent, quiet=True)
    with quiet.stage("x"):
        pass
    quiet.summary("built", ())
    assert silent.getvalue() == ""


def test_the_api_default_is_silent() -> None:
    assert progress.current().quiet
