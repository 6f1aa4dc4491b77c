"""Checks a pulled layer's tar as its bytes stream by: headers only, nothing extracted.

The archive writer feeds each layer's tar (inflated, if the blob is compressed) through
a :class:`LayerScan` on its way out: the tar is read by :class:`vmbuild.oci.tarread.TarScan`
(the reader, and the tar rules, of every untrusted tar) and its members' names by
:class:`vmbuild.oci.layercheck.LayerNames` (the rules a base layer's names get). File
data is skipped, not looked at.

Errors are kept (:attr:`LayerScan.error`), not raised while feeding, so the caller can
first say whether the blob matched its digest; names are the image's, so messages are
made printable.
"""

from __future__ import annotations

from vmbuild.errors import ImageError, VmbuildError, printable
from vmbuild.oci.layercheck import LayerNames
from vmbuild.oci.tarread import TarError, TarScan


class LayerScan:
    """Feed a layer tar's bytes in order (:meth:`feed`), then :meth:`finish`."""

    def __init__(self, where: str):
        self.where = where
        self.error: VmbuildError | None = None
        self._names = LayerNames(where)
        self._tar = TarScan(self._names.add)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.error is None:
            try:
                self._tar.feed(data)
            except VmbuildError as exc:
                self._fail(exc)

    def finish(self) -> VmbuildError | None:
        """The first problem found (the end included), or None."""
        if self.error is None:
            try:
                self._tar.finish()
                self._names.done()
            except VmbuildError as exc:
                self._fail(exc)
        return self.error

    def _fail(self, exc: VmbuildError) -> None:
        message = f"{self.where}: {exc.message}" if isinstance(exc, TarError) else exc.message
        self.error = ImageError(printable(message), exc.hint)
