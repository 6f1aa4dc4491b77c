"""The remote caches of one build: where to look (``--cache-from``), where to write
(``--cache-to``), and what a fault costs (one warning, never the build).

:class:`Remotes` is what :mod:`vmbuild.stepcache` asks on a local miss (the entry is
fetched, checked, and published into the local step cache) and tells about every entry
it uses or makes; those are pushed by :meth:`Remotes.flush` once the build's output is
in place, so Ctrl-C during a cache push leaves the output intact. A registry that cannot
be reached, refuses the login or refuses the artifact gets one warning and is not asked
again in this build; a bad entry is a miss with one warning.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmbuild import stepcache, tempdirs
from vmbuild.errors import VmbuildError
from vmbuild.registry.client import Client
from vmbuild.registry.pull import client_for
from vmbuild.registry.reference import Repository
from vmbuild.remotecache import artifact

log = logging.getLogger("vmbuild")
STEP = "step"
PULLED = "pulled"  # a fromImage pullImage's archive, keyed by its hash
_clients_lock = threading.Lock()
_current: ContextVar[Remotes | None] = ContextVar("vmbuild_remotes", default=None)


def current() -> Remotes | None:
    """The remote caches of the build running now (see :func:`.options.using`)."""
    return _current.get()


def warn(message: str) -> None:
    warnings.warn(message, UserWarning, 2)


@dataclass
class Remotes:
    cache_from: list[Repository]
    cache_to: list[Repository]
    tls_verify: bool = True
    _clients: dict[str, Client] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)
    _pending: dict[str, stepcache.CachedStep] = field(default_factory=dict)
    _files: dict[tuple[str, str], artifact.File] = field(default_factory=dict)
    _entries: dict[tuple[str, str], tuple[list[artifact.File], dict[str, Any]]] = field(
        default_factory=dict
    )
    _scratch: tempdirs.OwnedDir | None = None

    def _client(self, repo: Repository) -> Client:
        name = str(repo)
        with _clients_lock:  # entries may be fetched from several threads at once
            if name not in self._clients:
                self._clients[name] = client_for(repo, self.tls_verify)
            return self._clients[name]

    def _fault(self, repo: Repository, doing: str, exc: VmbuildError) -> None:
        self._down.add(str(repo))
        warn(f"remote cache {repo}: {doing} failed: {exc.message}; building without it")

    # -- the stepcache.Remote protocol --------------------------------------------------

    def fetch(self, key: str) -> bool:
        def keep(got: artifact.Got) -> None:
            (layer,) = got.files
            stepcache.publish(key, layer.path, layer.diff_id, got.meta)

        return self._fetch(STEP, key, keep, layers=True)

    def offer(self, key: str, step: stepcache.CachedStep) -> None:
        if self.cache_to:
            self._pending[key] = step

    # -- single files (pulled bases) ------------------------------------------------------

    def fetch_file(self, kind: str, key: str, dest: Path) -> bool:
        """Put the file entry ``KIND-KEY`` (a tar hashing to ``sha256:KEY``) at ``dest``."""

        def keep(got: artifact.Got) -> None:
            (file,) = got.files
            if file.diff_id != f"sha256:{key}":
                raise artifact.BadEntry(f"the {kind} entry {key[:12]} names another file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file.path, dest)

        return self._fetch(kind, key, keep, layers=False)  # (read as a checked base later)

    # -- entries of any kind (debian/remotelayers: Debian layers) ---------------------------

    def fetch_entry(
        self, kind: str, key: str, keep: Callable[[artifact.Got], None], *, layers: bool
    ) -> bool:
        """Ask for ``KIND-KEY`` (its files layers for an image, checked as such, when
        ``layers``); ``keep`` takes the checked files (from a work dir that goes
        afterwards: move them to :meth:`scratch` to use them later) or raises
        :class:`artifact.BadEntry`. False: no cache has it."""
        return self._fetch(kind, key, keep, layers=layers)

    def offer_entry(
        self, kind: str, key: str, files: list[artifact.File], meta: dict[str, Any]
    ) -> None:
        """Push ``KIND-KEY`` on :meth:`flush` (its files must last until then)."""
        if self.cache_to:
            self._entries[(kind, key)] = (files, meta)

    def scratch(self) -> Path:
        """A directory that lasts until :meth:`close`, for entries' files."""
        if self._scratch is None:
            self._scratch = tempdirs.OwnedDir("vmbuild-cache-files-")
        return self._scratch.path

    def _fetch(
        self, kind: str, key: str, keep: Callable[[artifact.Got], None], *, layers: bool
    ) -> bool:
        """Ask each ``--cache-from`` in turn for ``KIND-KEY``; ``keep`` takes the first
        entry found (while its work dir exists). A bad entry or a cache that fails is one
        warning and the next cache is asked."""
        for repo in self.cache_from:
            if str(repo) in self._down:
                continue
            try:
                with tempdirs.workdir("vmbuild-cache-") as work:
                    client = self._client(repo)
                    got = artifact.get(client, repo, kind, key, Path(work), layers=layers)
                    if got is None:
                        continue
                    keep(got)
                log.info("%s %s: from the remote cache %s", kind, key[:12], repo)
                return True
            except (artifact.BadEntry, ValueError) as exc:
                warn(f"remote cache {repo}: ignoring a bad entry: {exc}")
            except VmbuildError as exc:
                self._fault(repo, "lookup", exc)
            except OSError as exc:
                warn(f"remote cache {repo}: cannot keep the entry locally: {exc}")
        return False

    def offer_file(self, kind: str, key: str, path: Path) -> None:
        if self.cache_to:
            self._files[(kind, key)] = artifact.File(path, f"sha256:{key}")

    # -- after the build ----------------------------------------------------------------

    def flush(self) -> None:
        """Push every entry offered to every ``--cache-to`` (skipping what is there)."""
        entries = [
            (STEP, key, [artifact.File(step.layer, step.diff_id)], step.meta)
            for key, step in self._pending.items()
        ]
        entries += [(kind, key, [file], {}) for (kind, key), file in self._files.items()]
        entries += [
            (kind, key, files, meta) for (kind, key), (files, meta) in self._entries.items()
        ]
        for kind, key, files, meta in entries:
            for repo in self.cache_to:
                if str(repo) in self._down:
                    continue
                try:
                    if artifact.put(self._client(repo), repo, kind, key, files, meta):
                        log.info("%s %s: pushed to the remote cache %s", kind, key[:12], repo)
                except VmbuildError as exc:
                    self._fault(repo, "push", exc)
                except OSError as exc:
                    warn(f"remote cache {repo}: cannot read the entry {key[:12]}: {exc}")
        self._pending.clear()
        self._files.clear()
        self._entries.clear()

    def interrupt(self) -> None:
        """Make every request in flight stop soon (see :meth:`Client.interrupt`)."""
        with _clients_lock:
            clients = list(self._clients.values())
        for client in clients:
            client.interrupt()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._scratch is not None:
            self._scratch.remove()
            self._scratch = None
