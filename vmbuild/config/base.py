"""``fromImage``: an image archive's path, or a pullImage table pulled before the build.

nixpkgs composes ``fromImage = pullImage { ... }``; a spec writes the same as a table,
``fromImage = { function = "pullImage", imageName = ..., imageDigest = ..., hash = ... }``,
checked here as a pullImage spec of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from vmbuild.config.common import Fields
from vmbuild.errors import SpecError

if TYPE_CHECKING:  # the registry's code loads only for a spec that pulls (startup time)
    from vmbuild.config.pull import PullImageSpec

BaseSource: TypeAlias = "Path | PullImageSpec"


def get_base_image(fields: Fields, key: str = "fromImage") -> BaseSource | None:
    """``key`` as a path (which must exist) or as a pullImage table."""
    if not isinstance(fields.peek(key), dict):
        return fields.get_image_file(key)
    table: dict[str, Any] = dict(fields.get_table(key) or {})
    function = table.pop("function", "pullImage")
    if function != "pullImage":
        raise SpecError(
            f"{fields.where}: {key} as a table must be a pullImage, not {function!r}",
            f'write {key} = {{ function = "pullImage", imageName = "...", imageDigest = '
            '"sha256:...", hash = "sha256-..." }, or give an archive\'s path',
        )
    from vmbuild.config import pull

    return pull.parse(Fields(table, f"{fields.where}: {key}", fields.base_dir))
