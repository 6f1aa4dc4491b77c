"""pullImage: the image a pullImage spec names, fetched by digest into --out.

The pulling itself (manifests, blobs, the archive and its hash check) is
:func:`vmbuild.registry.pull.pull`, which takes plain arguments; this module reads them
off the spec. The registry's code is imported when a pull runs, not before, so builds
that pull nothing (and ``vmbuild stream``) start without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild.builders.result import BuildResult, result_for
from vmbuild.oci.output import OutputOptions

if TYPE_CHECKING:
    from vmbuild.config.pull import PullImageSpec


def build(spec: PullImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    """The ``function = "pullImage"`` build step (also a pullImage ``fromImage``'s pull)."""
    from vmbuild.registry.pull import pull

    pulled = pull(
        spec.repo,
        spec.image_digest,
        spec.platform,
        spec.final_image_name,
        spec.final_image_tag,
        out,
        opts,
        tls_verify=spec.tls_verify,
        expected=spec.sha256,
    )
    return result_for(pulled.image, out, opts, spec.build_args())
