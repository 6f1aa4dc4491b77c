"""Remote caches: build results shared through an OCI registry (``--cache-from``,
``--cache-to``, spec keys ``cacheFrom``/``cacheTo``, ``$VMBUILD_CACHE_REPO``).

``artifact`` puts and gets one entry (an OCI 1.1 artifact, every byte checked);
``remotes`` is one build's set of remote caches (asked on a local miss of the step
cache, written after the build); ``options`` reads where they are from the command line,
the spec and the environment, and :func:`using` wires them into a build.
"""

from vmbuild.remotecache.options import parse_cache_repo, remotes_for, using
from vmbuild.remotecache.remotes import PULLED, current

__all__ = ["PULLED", "current", "parse_cache_repo", "remotes_for", "using"]
