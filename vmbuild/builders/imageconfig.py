"""The image config JSON of a built image: what every builder writes the same way.

Env is merged as dockerTools does: the base image's Env first, then the spec's, a later
NAME replacing an earlier one (where the base had it, for the layered builders); no other
key of the base's config is inherited. The base's history is kept when it matches its
layers (else one entry per base layer is made up), and each new layer gets an entry.
The default tag is a hash of this config and the name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from vmbuild.oci.image import Layer, canonical_json
from vmbuild.oci.reader import BaseImage


def merge_env(base: list[str], own: list[str], in_place: bool = False) -> list[str]:
    """The base's Env, then the spec's; a NAME given again keeps only its new value, at
    its new position (buildImage) or at the base's (``in_place``: the layered builders,
    as nixpkgs' streamLayeredImage updates the base's variables)."""
    merged: dict[str, str] = {}
    for item in [*base, *own]:
        key = item.split("=", 1)[0]
        if not in_place:
            merged.pop(key, None)
        merged[key] = item
    return list(merged.values())


def image_config(
    *,
    architecture: str,
    created: str,
    config: dict[str, Any] | None,
    base: BaseImage | None,
    layers: Sequence[Layer],
    new_history: Sequence[str],
    env_in_place: bool = False,
) -> dict[str, Any]:
    """The config for ``layers`` (the base's, then one per entry of ``new_history``)."""
    own = dict(config or {})
    base_env = list((base.config.get("config") or {}).get("Env") or []) if base else []
    if base_env or "Env" in own:
        own["Env"] = merge_env(base_env, list(own.get("Env", [])), env_in_place)
    history = list(base.config.get("history") or []) if base else []
    if base and sum(1 for h in history if not h.get("empty_layer")) != len(base.layers):
        history = [{"created": created, "created_by": "base layer"} for _ in base.layers]
    history += [{"created": created, "created_by": by} for by in new_history]
    return {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": own,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }


def default_tag(name: str, config: dict[str, Any]) -> str:
    """A tag from the build's content: the same inputs give the same tag anywhere."""
    return hashlib.sha256(canonical_json({"name": name, "config": config})).hexdigest()[:32]
