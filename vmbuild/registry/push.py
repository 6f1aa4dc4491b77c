"""Push an image archive to a registry: only the blobs it lacks, then the manifest.

For each blob: HEAD (present: done); else, when another repository on the same registry
is known to hold it, a cross-repository mount; else a monolithic upload (POST, then PUT
with the digest). Uncompressed layers are compressed once (gzip by default, like
``skopeo copy``); the compressed form is kept in the blob cache and remembered by
diff_id, so pushing an unchanged image again costs only HEAD requests.

Layers are compressed one at a time, in the image's order, each with all of the
compressor's threads, and each is sent while the next one compresses (the registry's
own hashing and writing is about as much CPU again as the compression). A base layer's
tar is hashed once, by its blob's diff_id check as it is read.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from vmbuild import parts, tempdirs
from vmbuild.errors import ImageError, RegistryError, VmbuildError
from vmbuild.oci.compress import Compression, compressor
from vmbuild.oci.digest import of_bytes
from vmbuild.oci.image import Layer, canonical_json
from vmbuild.oci.image import layer_media_type as _media_type
from vmbuild.oci.layercheck import CheckedBlob
from vmbuild.oci.layout import MT_OCI_CONFIG, MT_OCI_MANIFEST
from vmbuild.oci.metadata import descriptor, oci_manifest_json
from vmbuild.oci.reader import read_image
from vmbuild.oci.referrers import is_oci, read_referrers
from vmbuild.oci.sinks import HashingWriter, StoppingWriter
from vmbuild.registry import blobs, known, repush
from vmbuild.registry.answers import discard
from vmbuild.registry.auth import Credentials
from vmbuild.registry.client import Client
from vmbuild.registry.progress import Progress
from vmbuild.registry.pull import client_for
from vmbuild.registry.rawconfig import find_raw_config
from vmbuild.registry.reference import Reference
from vmbuild.registry.repush import Pushed, PushResult

_SPACE = "check free space, or set VMBUILD_CACHE_DIR to another place"


@dataclass(frozen=True)
class Blob:
    """A blob to push: ``size`` bytes at ``offset`` in ``path`` (or ``data``)."""

    digest: str
    size: int
    media_type: str
    path: Path | None = None
    offset: int = 0
    data: bytes | None = None


class _Reader:
    """A read-only view of a file range that reports progress (an upload body)."""

    def __init__(self, blob: Blob, progress: Progress, name: str, stop: threading.Event):
        assert blob.path is not None
        self._stop = stop
        self._f = open(blob.path, "rb")  # noqa: SIM115 - closed by http.client via close()
        self._f.seek(blob.offset)
        self._left = blob.size
        self._progress = progress
        self._name = name

    def read(self, n: int = -1) -> bytes:
        if self._stop.is_set():
            raise blobs.Cancelled()
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        self._progress.update(self._name, len(data))
        return data

    def close(self) -> None:
        self._f.close()


class _Turns:
    """Blocks that run one at a time in the order of their numbers 0, 1, 2, ... (the
    executor starts tasks in the order they were submitted, so each number's turn
    comes); once ``stop`` is set, waiting for a turn raises :class:`blobs.Cancelled`."""

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self._next = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def turn(self, number: int) -> Iterator[None]:
        with self._cond:
            while self._next != number:
                if self._stop.is_set():
                    raise blobs.Cancelled()
                self._cond.wait(0.1)
        try:
            yield
        finally:
            with self._cond:
                self._next = number + 1
                self._cond.notify_all()


class Pusher:
    def __init__(self, client: Client, dest: Reference, progress: Progress):
        self.client = client
        self.dest = dest
        self.repo = dest.repo.path
        self.progress = progress
        self.what = f"push to {dest}"
        self.counts = {"uploaded": 0, "mounted": 0, "present": 0}
        self.stop = threading.Event()  # set when the push fails: stop the other transfers
        self.subject_seen = False
        self._lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def has(self, digest: str) -> bool:
        resp = self.client.head(
            f"/v2/{self.repo}/blobs/{digest}",
            scope=f"repository:{self.repo}:pull,push",
            what=f"{self.what}: blob {digest}",
        )
        return resp.status == 200

    def ensure(self, blob: Blob) -> None:
        if self.has(blob.digest):
            self._count("present")
            return
        source = known.seen_in(self.client.host, blob.digest)
        query = {}
        scope = f"repository:{self.repo}:pull,push"
        if source and source != self.repo:
            query = {"mount": blob.digest, "from": source}
            scope += f" repository:{source}:pull"
        path = f"/v2/{self.repo}/blobs/uploads/"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        resp = self.client.request(
            "POST", path, scope=scope, what=f"{self.what}: blob {blob.digest}", expect=(201, 202)
        )
        discard(resp)
        if resp.status == 201:
            self._count("mounted")
            return
        self._upload(blob, resp.getheader("Location") or "")
        self._count("uploaded")

    def _upload(self, blob: Blob, location: str) -> None:
        what = f"{self.what}: blob {blob.digest}"
        if not location:
            raise RegistryError(f"{what}: the registry gave no upload location", "odd registry")
        url = urllib.parse.urljoin(self.client.base() + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": blob.digest})
        name = blob.digest[7:19]
        self.progress.start(name, blob.size)

        def body() -> BinaryIO:
            self.progress.rewind(name, 0)
            if blob.data is not None:
                return io.BytesIO(blob.data)
            return cast(BinaryIO, _Reader(blob, self.progress, name, self.stop))

        try:
            resp = self.client.request(
                "PUT",
                url,
                scope=f"repository:{self.repo}:pull,push",
                what=what,
                expect=(201,),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(blob.size),
                },
                body=body,
            )
            discard(resp)
        except BaseException:
            self.progress.drop(name)
            raise
        self.progress.done(name)

    def put_manifest(
        self, manifest: bytes, reference: str | None = None, media_type: str = MT_OCI_MANIFEST
    ) -> str:
        """PUT ``manifest`` under ``reference`` (default: the destination's tag or digest);
        returns its digest. ``self.subject_seen`` says whether the registry answered with
        ``OCI-Subject`` (it has the referrers API)."""
        resp = self.client.request(
            "PUT",
            f"/v2/{self.repo}/manifests/{reference or self.dest.reference}",
            scope=f"repository:{self.repo}:pull,push",
            what=f"{self.what}: manifest",
            expect=(200, 201),
            headers={"Content-Type": media_type},
            body=manifest,
        )
        discard(resp)
        self.subject_seen = resp.getheader("OCI-Subject") is not None
        return of_bytes(manifest)

    def send_bytes(self, data: bytes, media_type: str) -> None:
        """Make sure the registry has the blob ``data``."""
        self.ensure(Blob(of_bytes(data), len(data), media_type, data=data))

    def get_manifest(self, reference: str, accept: str, limit: int) -> bytes | None:
        """The manifest at ``reference`` (None when there is none or it is too large)."""
        resp = self.client.request(
            "GET",
            f"/v2/{self.repo}/manifests/{reference}",
            scope=f"repository:{self.repo}:pull,push",
            what=f"{self.what}: manifest {reference}",
            expect=(200, 404),
            headers={"Accept": accept},
        )
        body = resp.read(limit + 1)
        discard(resp)
        return body if resp.status == 200 and len(body) <= limit else None


def _compress(layer: Layer, kind: Compression, level: int | None, stop: threading.Event) -> Blob:
    """The compressed form of an uncompressed layer, from the cache or made now."""
    found = known.compressed_blob(layer.diff_id, kind)
    if found and blobs.cached(*found):
        return Blob(found[0], found[1], _media_type(kind), blobs.store_path(found[0]))
    store = blobs.ensure_store()
    try:
        parts.sweep_dir(store)  # (what killed pushes and pulls left, of any name)
        fd, tmp = parts.create(store / "compress")
    except OSError as exc:
        raise VmbuildError(f"cannot write to the blob cache: {exc}", _SPACE) from exc
    # A base layer's blob checks its tar against the diff_id as it is read (see
    # oci/layercheck.py); hashing the tar here as well was a second sha256 pass over
    # every layer (~0.7 s of a 900 MB push's 4.4 s of CPU).
    source = layer.blob
    checked = isinstance(source, CheckedBlob) and source.checks_next_read
    try:
        with os.fdopen(fd, "wb") as f:  # (its lock held until it is renamed)
            hw = HashingWriter(f)
            with compressor(cast(BinaryIO, hw), kind, level) as z:
                plain: HashingWriter | StoppingWriter
                if checked:
                    plain = StoppingWriter(z, stop=stop, cancelled=blobs.Cancelled)
                else:
                    plain = HashingWriter(z, stop=stop, cancelled=blobs.Cancelled)
                source.copy_to(cast(BinaryIO, plain))
            if isinstance(plain, HashingWriter) and plain.digest != layer.diff_id:
                raise ImageError(
                    f"layer {layer.diff_id} of the image has different contents",
                    "the archive is corrupt",
                )
            f.flush()
            os.replace(tmp, blobs.store_path(hw.digest))
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise VmbuildError(f"compressing layer {layer.diff_id} failed: {exc}", _SPACE) from exc
        raise
    known.remember_compressed(layer.diff_id, kind, hw.digest, hw.size)
    return Blob(hw.digest, hw.size, _media_type(kind), blobs.store_path(hw.digest))


def _layer_blob(layer: Layer, kind: Compression, level: int | None, stop: threading.Event) -> Blob:
    ref = layer.blob
    path = getattr(ref, "path", None)
    if layer.compression != "none" or kind == "none":
        if not isinstance(path, Path):
            raise ImageError("a layer of the image is not in a file", "write the image first")
        return Blob(layer.digest, ref.size, layer.media_type, path, getattr(ref, "offset", 0))
    return _compress(layer, kind, level, stop)


def push(
    image: Path,
    dest: Reference,
    *,
    tls_verify: bool = True,
    compression: Compression = "gzip",
    level: int | None = None,
    jobs: int = 4,
    progress: Progress | None = None,
    credentials: Credentials | None = None,
) -> PushResult:
    """Push the image archive or layout at ``image`` to ``dest`` (as ``credentials``,
    else with those the auth file has for it)."""
    progress = progress or Progress("pushed")
    client = client_for(dest.repo, tls_verify, credentials)
    pusher = Pusher(client, dest, progress)
    ident = repush.identity(image)
    with tempdirs.workdir("vmbuild-push-") as work:
        base = read_image(image, Path(work))
        found = read_referrers(image, Path(work)) if is_oci(image) else []
        config = find_raw_config(image, Path(work), base.config) or canonical_json(base.config)
        config_blob = Blob(of_bytes(config), len(config), MT_OCI_CONFIG, data=config)
        started: set[str] = set()
        lock = threading.Lock()

        def send(blob: Blob) -> Blob:
            with lock:
                first = blob.digest not in started
                started.add(blob.digest)
            if first:
                pusher.ensure(blob)
            return blob

        turns = _Turns(pusher.stop)

        def layer_task(index: int | None, layer: Layer) -> Blob:
            # One layer is compressed at a time, in the image's order (with all cores:
            # the compressor has its threads), and sent as soon as it is done while the
            # next one compresses: uploads (and the registry's hashing and writing)
            # overlap compression, and the last (usually smallest) layer's upload is
            # all that is left at the end. Compressing all layers at once made them
            # finish together, and nothing was sent until then. A layer sent as it is
            # (already compressed, or --compress none) waits for no turn.
            if index is None:
                return send(_layer_blob(layer, compression, level, pusher.stop))
            with turns.turn(index):
                blob = _layer_blob(layer, compression, level, pusher.stop)
            return send(blob)

        # the turn of each layer that is compressed here (None: sent as it is)
        here = [la.compression == "none" and compression != "none" for la in base.layers]
        numbers = [sum(here[:i]) if h else None for i, h in enumerate(here)]

        try:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                sent = [pool.submit(send, config_blob)]
                layers = zip(numbers, base.layers, strict=True)
                sent += [pool.submit(layer_task, n, la) for n, la in layers]
                try:
                    wait(sent, return_when=FIRST_EXCEPTION)  # the first failure, at once
                    failed = [f for f in sent if f.done() and f.exception() is not None]
                    if failed:
                        failed[0].result()
                    blobs_sent = [f.result() for f in sent]
                except BaseException:
                    pusher.stop.set()
                    client.interrupt()  # wake uploads blocked on a slow registry
                    for f in sent:
                        f.cancel()
                    raise
        finally:
            progress.close()
            client.close()
    layer_blobs = blobs_sent[1:]
    unique = list({b.digest: b for b in blobs_sent}.values())
    manifest = oci_manifest_json(
        descriptor(MT_OCI_CONFIG, config_blob.digest, config_blob.size),
        [descriptor(b.media_type, b.digest, b.size) for b in layer_blobs],
    )
    try:
        digest = pusher.put_manifest(manifest)
        if found:
            from vmbuild.registry.referrers import push_referrers

            push_referrers(
                pusher,
                found,
                {"mediaType": MT_OCI_MANIFEST, "digest": digest, "size": len(manifest)},
            )
    finally:
        client.close()
    known.remember_seen(client.host, dest.repo.path, [b.digest for b in unique])
    if not found:  # the next push of this file can be one HEAD (registry/repush.py)
        repush.remember(ident, compression, level, Pushed(digest, MT_OCI_MANIFEST, len(unique)))
    return PushResult(digest, **pusher.counts)
