"""Packing a big tree into a gzip layer, against `tar --sort=name | pigz -6`.

Copies /usr/lib/x86_64-linux-gnu and /usr/share (about 60,000 files, 1.5+ GB here) into
a scratch tree, then times, on that same tree in the same run:

- the anchor: ``tar --sort=name -cf - . | pigz -6 > out``
- vmbuild's layer writer at the default gzip level (ISA-L level 1), at ISA-L's best
  (3) and at zlib level 6 (the documented "pigz-sized" level), each in a child process
  so its peak memory (max RSS) can be read.

It prints time and size ratios against the anchor; targets: >= 4x faster, <= 12%
larger at the default level; level 6 at pigz -6's size; peak memory under 200 MB.
The compressed bytes are also packed with 1 thread and compared to the multi-threaded
output (they must be identical). Usage:
``python bench/bench_pack.py [--small] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCES = ["/usr/lib/x86_64-linux-gnu", "/usr/share"]
SMALL_SOURCES = ["/usr/share/doc", "/usr/share/perl"]

PACKER = """
import sys, os
from pathlib import Path
import vmbuild.oci.compress as c
if sys.argv[4] != "0":
    c.threads = lambda: int(sys.argv[4])
from vmbuild.oci import layer
from vmbuild.oci.tree import from_roots
with open(sys.argv[2], "wb") as f:
    layer.pack(from_roots([Path(sys.argv[1])], keep_dirlinks=True), f, compression="gzip",
               level=int(sys.argv[3]), mtime=1)
"""


def timed(argv: list[str], **kw: object) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one child process (read with wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"bench_pack: {argv[0]} failed with status {proc.returncode}")
    return elapsed, usage.ru_maxrss


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="a small tree, for a smoke run")
    ap.add_argument("--keep", type=Path, help="reuse/keep the scratch tree here")
    args = ap.parse_args()
    for tool in ("tar", "pigz"):
        if not shutil.which(tool):
            print(f"bench_pack: {tool} is missing -- apt-get install {tool}", file=sys.stderr)
            return 3
    work = Path(tempfile.mkdtemp(prefix="vmbuild-bench-"))
    tree = args.keep or work / "tree"
    try:
        if not tree.exists():
            tree.mkdir(parents=True)
            for src in SMALL_SOURCES if args.small else SOURCES:
                subprocess.run(["cp", "-a", src, str(tree / Path(src).name)], check=True)
        files = sum(len(f) + len(d) for _, d, f in os.walk(tree))
        size = sum(p.lstat().st_size for p in tree.rglob("*") if p.is_file())
        print(f"tree: {files} entries, {size / 1e9:.2f} GB")
        # warm the page cache once so neither side pays for the first read
        subprocess.run(["tar", "-cf", "-", "."], cwd=tree, stdout=subprocess.DEVNULL, check=True)

        anchor = work / "anchor.tar.gz"
        with open(anchor, "wb") as sink:
            t_anchor, _ = timed(
                ["bash", "-c", "tar --sort=name -cf - . | pigz -6"], cwd=tree, stdout=sink
            )
        s_anchor = anchor.stat().st_size
        print(f"anchor tar|pigz -6: {t_anchor:.2f} s, {s_anchor / 1e6:.1f} MB")

        py = [sys.executable, "-c", PACKER, str(tree)]
        results = {}
        for level in (1, 3, 6):
            out = work / f"vmbuild-{level}.gz"
            t, rss = timed([*py, str(out), str(level), "0"])
            results[level] = out
            print(
                f"vmbuild gzip level {level}: {t:.2f} s, {out.stat().st_size / 1e6:.1f} MB, "
                f"peak RSS {rss / 1024:.0f} MB -> speed x{t_anchor / t:.2f}, "
                f"size {out.stat().st_size / s_anchor:.3f} of pigz -6"
            )
        single = work / "vmbuild-1-single.gz"
        timed([*py, str(single), "1", "1"])
        same = sha(single) == sha(results[1])
        print(f"1 thread vs all threads, level 1: {'identical' if same else 'DIFFERENT'} bytes")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
