"""Debian packages as content units: where they come from (the host's apt sources),
the signed indexes (``release``, ``index``), the resolver, the lock file, verified
downloads, reading ``.deb`` files on the host and the dpkg database of an image."""
