"""``python -m vmbuild.layers.fakepack ROOT OUT MTIME``: pack ROOT as a plain layer tar.

Run under ``fakeroot -i STATE`` (see :mod:`vmbuild.layers.custom`): the owners, modes
and device nodes come from ``lstat``, which fakeroot answers from its state. Writes OUT
under a temporary name and renames it when complete.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vmbuild.oci.layer import Owner, pack
from vmbuild.oci.tree import from_roots


def main(argv: list[str]) -> int:
    root, out, mtime = Path(argv[0]), Path(argv[1]), int(argv[2])
    tree = from_roots([root], keep_dirlinks=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        pack(tree, f, compression="none", mtime=mtime, owner=Owner(None, None))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
