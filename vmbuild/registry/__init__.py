"""A registry client (OCI distribution API v2): pull, prefetch and push.

- :mod:`.reference`: image names, tags and digests; which host serves which repository.
- :mod:`.auth`: credentials (docker config.json) and the basic / bearer-token flows.
- :mod:`.client`: HTTP requests to one registry, with auth, redirects and error mapping.
- :mod:`.manifest`: manifest and index parsing, platform selection.
- :mod:`.blobs`: verified, resumable, cached, parallel blob downloads.
- :mod:`.pull`, :mod:`.prefetch`, :mod:`.push`: the three operations.
- :mod:`.cli`: the ``prefetch`` and ``push`` subcommands.
"""
