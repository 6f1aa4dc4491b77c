"""A registry client (OCI distribution API v2): pull, prefetch and push.

- :mod:`.reference`: image names, tags and digests; which host serves which repository.
- :mod:`.nixhash`: sha256 in Nix's spellings (nix-base32, SRI).
- :mod:`.auth`: credentials (docker config.json) and authentication challenges.
- :mod:`.credhelper`: docker credential helpers (``credHelpers``, ``credsStore``).
- :mod:`.proxy`: HTTP(S) proxies from the environment (``https_proxy``, ``no_proxy``).
- :mod:`.client`: HTTP requests to one registry, with auth, redirects, retries, errors.
- :mod:`.manifest`: manifest and index parsing, digest checks, platform selection.
- :mod:`.blobs`: verified, resumable, cached, parallel blob downloads.
- :mod:`.inflate`: hashing and inflating streams; cached blobs copied out as layer tars.
- :mod:`.known`: what earlier runs learnt (compressed forms, blob locations, tar sizes).
- :mod:`.rawconfig`: an archive's original config bytes, for pushes.
- :mod:`.progress`: transfer progress on stderr.
- :mod:`.pull`, :mod:`.prefetch`, :mod:`.push`: the three operations.
- :mod:`.cli`: the ``prefetch`` and ``push`` subcommands.
"""
