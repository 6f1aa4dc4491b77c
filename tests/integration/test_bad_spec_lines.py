"""Bad values in a spec are one line on stderr with exit 2, never a traceback or an image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli

CASES = [
    ('created = "9999-12-31T23:59:59-01:00"', "out of range"),
    ('created = "0001-01-01T00:00:00+01:00"', "out of range"),
    ("created = 1979-05-27T07:32:00Z", 'write it as a string: created = "1979-05-27T07:32:00Z"'),
    ('extraCommands = "echo a\\u0000b"', "extraCommands holds a NUL byte (line 1)"),
    ('runAsRoot = "true\\necho \\u0000"', "runAsRoot holds a NUL byte (line 2)"),
    ("config.Labels = { a = 1 }", "config.Labels.a must be a string"),
    ("config.Labels = { a = 2024-01-01 }", "config.Labels.a must be a string"),
    ('config.ExposedPorts = { "http" = {} }', "key 'http' is not a port"),
    ('config.ExposedPorts = { "80/tcpx" = {} }', "is not a port"),
    ('config.ExposedPorts = { "70000/tcp" = {} }', "is not a port"),
    ('config.ExposedPorts = { "80/tcp" = 1 }', "must be an empty table"),
    ('config.Volumes = { "/data" = 1 }', "must be an empty table"),
    ('config.Volumes = ["/data"]', "config.Volumes must be a table"),
    ("config.Healthcheck = { Test = 1 }", "Healthcheck.Test must be a list of strings"),
    ('config.Healthcheck = { Test = ["CMD"], Interval = "5s" }', "Healthcheck.Interval"),
    ('config.Healthcheck = { Probe = ["CMD"] }', "is not a Healthcheck key"),
    ('config.Memory = "1g"', "config.Memory must be an integer"),
    ('config.ArgsEscaped = "yes"', "config.ArgsEscaped must be true or false"),
    ("config.User = 1000", "config.User must be a string"),
    ('config.Cmd = ["a", 1]', "config.Cmd must be a list of strings"),
]


@pytest.mark.parametrize(("line", "message"), CASES)
def test_bad_value_is_one_line(tmp_path: Path, line: str, message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "bad"\n{line}\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmbuild: error:"), proc.stderr
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


@pytest.mark.parametrize("function", ["buildLayeredImage", "streamLayeredImage"])
def test_layered_scripts_are_checked_too(tmp_path: Path, function: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "bad"\nfunction = "{function}"\nfakeRootCommands = "a\\u0000"\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar")
    assert proc.returncode == 2
    assert "fakeRootCommands holds a NUL byte" in proc.stderr


def test_good_config_values_still_build(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "good"\n'
        'config.Labels = { "org.opencontainers.image.title" = "x" }\n'
        'config.ExposedPorts = { "80" = {}, "53/udp" = {}, "9/sctp" = {} }\n'
        'config.Volumes = { "/data" = {} }\n'
        'config.Healthcheck = { Test = ["CMD", "true"], Interval = 5000000000, Retries = 3 }\n'
        "config.Memory = 1024\nconfig.ArgsEscaped = false\n"
    )
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar")
    assert proc.returncode == 0, proc.stderr


def test_contents_warns_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f").write_text("x")
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "old"\ncontents = ["root"]\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar.gz")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("vmbuild: warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "'contents' is deprecated, use 'copyToRoot'" in warnings[0]
    assert "FutureWarning" not in proc.stderr and ".py:" not in proc.stderr


@pytest.mark.parametrize("created", ["0001-01-02T00:00:00Z", "9999-12-30T00:00:00Z"])
def test_extreme_dates_build(tmp_path: Path, created: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "old"\ncreated = "{created}"\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "out.tar", "--json")
    assert proc.returncode == 0, proc.stderr
    assert f'"created": "{created}"' in proc.stdout
