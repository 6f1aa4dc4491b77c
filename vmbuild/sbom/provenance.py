"""An in-toto Statement (v1) carrying a SLSA v1 provenance predicate for one build.

The subject is the image (its manifest digest, and its config digest, the image ID);
``externalParameters`` hold the function and the spec as the build read it
(buildArgs); ``resolvedDependencies`` every input's digest (the spec file, the new
layer holding copyToRoot, the base image, the guest kernel and initramfs when a build
VM ran); the builder's version is vmbuild's. No clock, no host name: the same build
gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:vmbuild:buildType:dockerTools:v1"
BUILDER_ID = "urn:vmbuild:builder"


@dataclass(frozen=True)
class Dependency:
    name: str
    sha256: str  # hex
    uri: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "digest": {"sha256": self.sha256}}
        if self.uri:
            out["uri"] = self.uri
        if self.annotations:
            out["annotations"] = self.annotations
        return out


def _plain(value: Any) -> Any:
    """TOML values (dates, times) as JSON ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def statement(
    subjects: Sequence[tuple[str, str]],
    function: str,
    build_args: dict[str, Any],
    internal: dict[str, Any],
    deps: Sequence[Dependency],
    version: str,
) -> bytes:
    """The statement's bytes; ``subjects`` are (name, sha256 digest) pairs."""
    body = {
        "_type": STATEMENT,
        "subject": [
            {"name": name, "digest": {"sha256": digest.split(":", 1)[-1]}}
            for name, digest in subjects
        ],
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"function": function, "spec": _plain(build_args)},
                "internalParameters": internal,
                "resolvedDependencies": [d.to_json() for d in deps],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"vmbuild": version}},
                "metadata": {},
            },
        },
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
