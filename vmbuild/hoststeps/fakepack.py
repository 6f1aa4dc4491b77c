"""``python -m vmbuild.hoststeps.fakepack JOB``: the program of one fakeroot session.

Run under ``fakeroot`` by :func:`vmbuild.hoststeps.custom.fake_root`. JOB is a JSON file
naming the scratch root, the command to run there (fakeRootCommands, maybe under
fakechroot) with its environment, a log file, a status file, the output tar and its
mtime. In order: every file of the root is chowned to 0:0 (only in fakeroot's eyes),
the command runs (its exit status goes to the status file, its output to the log),
and, if it succeeded, the root is packed to the output (under a temporary name,
renamed when complete) with owners, modes and device nodes as fakeroot reports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vmbuild.oci.layer import Owner, pack
from vmbuild.oci.tree import from_roots
from vmbuild.run import run

FAKEROOT_VARS = ("LD_PRELOAD", "LD_LIBRARY_PATH")


def chown_to_root(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), 0, 0)


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    root, out = Path(job["root"]), Path(job["out"])
    chown_to_root(root)
    # fakeroot's own variables (LD_PRELOAD, FAKEROOTKEY, ...) join the command's env
    env = dict(job["env"])
    env.update({k: v for k, v in os.environ.items() if k in FAKEROOT_VARS or "FAKE" in k})
    with open(job["log"], "wb") as log:
        proc = run(
            job["argv"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    Path(job["status"]).write_text(str(proc.returncode))
    if proc.returncode != 0:
        return 0
    tree = from_roots([root], keep_dirlinks=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        pack(tree, f, compression="none", mtime=int(job["mtime"]), owner=Owner(None, None))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
