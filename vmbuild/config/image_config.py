"""The ``config`` table of a spec, checked as Docker and podman will read it.

Every key must be one of the image spec's ``config`` keys and every value must have the
JSON type Docker's decoder expects (``podman load`` refuses an image whose config does
not decode), so a wrong type is one clear line here rather than an image that will not
load. ``Cmd`` and ``Entrypoint`` may be a string, which Docker reads as the one argument;
it is written as a list of that string.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from vmbuild.errors import SpecError

# Keys of the image config's "config" object (Docker image spec v1.3 / OCI config).
CONFIG_KEYS = frozenset(
    {
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Memory",
        "MemorySwap",
        "CpuShares",
        "Healthcheck",
        "OnBuild",
        "Shell",
    }
)
_STRING_LISTS = ("Env", "Entrypoint", "Cmd", "Shell", "OnBuild")
ONE_ARGUMENT = ("Cmd", "Entrypoint")
_STRINGS = ("User", "WorkingDir", "StopSignal")
_INTEGERS = ("Memory", "MemorySwap", "CpuShares")
# "80", "80/tcp", "53/udp", "9/sctp": the image spec's port keys (tcp when none is given)
PORT_RE = re.compile(r"^([1-9][0-9]{0,4})(/(tcp|udp|sctp))?$")
_HEALTH_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def _fail(where: str, key: str, what: str, hint: str = "fix the spec") -> SpecError:
    return SpecError(f"{where}: config.{key} {what}", hint)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_empty_tables(key: str, value: dict[str, Any], where: str) -> None:
    for k, v in value.items():
        if v != {}:
            raise _fail(where, f"{key}.{k!r}", "must be an empty table", f'write "{k}" = {{}}')


def _check_ports(value: dict[str, Any], where: str) -> None:
    for port in value:
        m = PORT_RE.match(port)
        if not m or int(m.group(1)) > 65535:
            raise _fail(
                where,
                "ExposedPorts",
                f"key {port!r} is not a port",
                'write "PORT/PROTO" with PROTO tcp, udp or sctp, e.g. "8080/tcp" = {}',
            )
    _check_empty_tables("ExposedPorts", value, where)


def _check_health(value: dict[str, Any], where: str) -> None:
    for k, v in value.items():
        if k == "Test":
            if not _string_list(v):
                raise _fail(where, "Healthcheck.Test", "must be a list of strings")
        elif k in (*_HEALTH_DURATIONS, "Retries"):
            if not _is_int(v) or v < 0:
                raise _fail(
                    where, f"Healthcheck.{k}", "must be a whole number (nanoseconds for times)"
                )
        else:
            raise _fail(
                where,
                f"Healthcheck.{k}",
                "is not a Healthcheck key",
                f"use {', '.join(['Test', *_HEALTH_DURATIONS, 'Retries'])}",
            )


def _check_value(key: str, value: Any, where: str) -> None:
    if key in _STRING_LISTS:
        if not _string_list(value):
            raise _fail(where, key, "must be a list of strings")
        if key == "Env":
            for v in value:
                if "=" not in v:
                    raise SpecError(f"{where}: config.Env item {v!r} lacks '='", 'use "NAME=value"')
    elif key in _STRINGS:
        if not isinstance(value, str):
            raise _fail(where, key, "must be a string")
    elif key in _INTEGERS:
        if not _is_int(value):
            raise _fail(where, key, "must be an integer")
    elif key == "ArgsEscaped":
        if not isinstance(value, bool):
            raise _fail(where, key, "must be true or false")
    elif not isinstance(value, dict):
        raise _fail(where, key, "must be a table")
    elif key == "Labels":
        for k, v in value.items():
            if not isinstance(v, str):
                raise _fail(
                    where, f"Labels.{k}", "must be a string", f'write it quoted: "{k}" = "{v}"'
                )
    elif key == "ExposedPorts":
        _check_ports(value, where)
    elif key == "Volumes":
        _check_empty_tables("Volumes", value, where)
    else:
        _check_health(value, where)


def check_image_config(config: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Validate the ``config`` table against the image spec's keys and value types."""
    if config is None:
        return {}
    config = dict(config)
    for key, value in config.items():
        if key not in CONFIG_KEYS:
            raise SpecError(
                f"{where}: unknown config key {key!r}",
                f"use keys of the Docker image spec: {', '.join(sorted(CONFIG_KEYS))}",
            )
        if isinstance(value, dt.date | dt.time):
            raise _fail(where, key, "is a TOML date", "write it as a string")
        if key in ONE_ARGUMENT and isinstance(value, str):
            value = config[key] = [value]  # Docker reads a string as the one argument
        _check_value(key, value, where)
    return config
