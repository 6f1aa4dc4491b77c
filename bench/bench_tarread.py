"""Reading untrusted tars' headers: :mod:`tarfile` against vmbuild's tar reader.

Two real workloads, each held in memory (or the page cache) first, so only the walk is
timed, in the same run:

1. the data tars of a real image's packages: ``nginx-light`` and ``redis-server`` with
   their dependencies (bench_debian's image), downloaded with ``apt-get download`` (the
   host's apt configuration) into a scratch directory, or every ``.deb`` in ``--debs
   DIR``; each data tar as ``dpkg-deb --fsys-tarfile`` gives it. Every member's header
   is read and a regular member's data copied to a sink that drops it (what
   :mod:`vmbuild.debian.debfile` does);
2. one large base layer: a tar of ``--tree`` (default /usr: about 140,000 members
   here), written to a scratch file once. Headers only, data skipped (what
   :mod:`vmbuild.oci.layercheck` and :mod:`vmbuild.registry.layerscan` do).

For each: the anchor, reading the bytes alone in 1 MiB pieces; ``tarfile`` as a stream
(``r|``, as an untrusted stream is read) and seeking in the file (``r:``, data seeked
over: tarfile's least cost, which no stream allows); :mod:`vmbuild.oci.tarread`'s pull
reader, and (2 only) its push-fed scanner. Printed: CPU seconds (best of
``--rounds``), each against the anchor, and tarfile's extra seconds over the lean
reader; the load average is printed too (the machine may be shared). Usage:
``flock /tmp/vmbuild-bench.lock python bench/bench_tarread.py [--debs DIR] [--tree DIR]
[--rounds N]``; run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vmbuild.oci import tarread  # noqa: E402

PACKAGES = ("nginx-light", "redis-server")
CHUNK = 1 << 20


class Drop:
    """A sink that keeps nothing."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def closure(packages: Iterable[str]) -> list[str]:
    """The packages ``packages`` depend on (Depends, Pre-Depends), recursively."""
    done = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return sorted({ln for ln in done.stdout.splitlines() if ln and ln[0] not in " <"})


def download(packages: list[str], into: Path) -> list[Path]:
    into.chmod(0o777)  # apt's sandbox user writes there
    subprocess.run(["apt-get", "download", "-q", *packages], check=True, cwd=into,
                   capture_output=True)  # fmt: skip
    return sorted(into.glob("*.deb"))


def data_tars(debs: list[Path]) -> list[bytes]:
    return [
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(d)], check=True,
                       capture_output=True).stdout
        for d in debs
    ]  # fmt: skip


def best(rounds: int, run: Callable[[], int]) -> tuple[float, int]:
    """The least CPU seconds of ``rounds`` calls of ``run``, and what it counted."""
    times, count = [], 0
    for _ in range(rounds):
        start = time.process_time()
        count = run()
        times.append(time.process_time() - start)
    return min(times), count


# --- the readers, as their callers use them (a count of members, to compare) ---


def read_bytes(open_: Callable[[], BinaryIO]) -> int:
    f = open_()
    while f.read(CHUNK):
        pass
    return 0


def tarfile_stream(open_: Callable[[], BinaryIO], copy: bool) -> int:
    n = 0
    with tarfile.open(fileobj=open_(), mode="r|") as tar:
        for m in tar:
            n += 1
            if copy and m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                shutil.copyfileobj(f, cast(BinaryIO, Drop()), CHUNK)
    return n


def tarfile_seeking(open_: Callable[[], BinaryIO], copy: bool) -> int:
    n = 0
    with tarfile.open(fileobj=open_(), mode="r:") as tar:
        while (m := tar.next()) is not None:
            cast(Any, tar).members.clear()  # as a long walk must, to keep memory flat
            n += 1
            if copy and m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                shutil.copyfileobj(f, cast(BinaryIO, Drop()), CHUNK)
    return n


def lean_pull(open_: Callable[[], BinaryIO], copy: bool) -> int:
    n = 0
    reader = tarread.TarReader(open_())
    for head in reader:
        n += 1
        if copy and head.isreg:
            reader.copy_data(cast(BinaryIO, Drop()))
    return n


def lean_push(open_: Callable[[], BinaryIO]) -> int:
    n = 0

    def count(head: tarread.Header) -> None:
        nonlocal n
        n += 1

    scan = tarread.TarScan(count)
    f = open_()
    while data := f.read(CHUNK):
        scan.feed(data)
    scan.finish()
    return n


def each(tars: list[bytes], walk: Callable[[Callable[[], BinaryIO]], int]) -> Callable[[], int]:
    def run() -> int:
        return sum(walk(functools.partial(io.BytesIO, t)) for t in tars)

    return run


def report(title: str, rows: list[tuple[str, float, int]]) -> None:
    anchor = rows[0][1]
    lean = min(t for name, t, _ in rows if name.startswith("lean"))
    print(title)
    for name, took, count in rows:
        extra = f"  {took - lean:+.2f} s over lean" if name.startswith("tarfile") else ""
        members = f"  {count} members" if count else ""
        print(f"  {name:<24} {took:6.2f} s CPU  {took / anchor:5.1f}x anchor{members}{extra}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", type=Path, help="read these .debs (default: download)")
    ap.add_argument("--tree", type=Path, default=Path("/usr"), help="the layer's tree")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each (best kept)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tarread-") as tmp:
        work = Path(tmp)
        if args.debs:
            debs = sorted(args.debs.glob("*.deb"))
        else:
            (work / "debs").mkdir()
            debs = download(closure(PACKAGES), work / "debs")
        tars = data_tars(debs)
        size = sum(map(len, tars)) / 2**20
        r = args.rounds
        report(
            f"1. data tars of {len(debs)} packages ({size:.0f} MiB), data copied",
            [
                ("anchor: bytes only", *best(r, each(tars, read_bytes))),
                ("tarfile r| (stream)", *best(r, each(tars, lambda o: tarfile_stream(o, True)))),
                ("tarfile r: (seeking)", *best(r, each(tars, lambda o: tarfile_seeking(o, True)))),
                ("lean pull", *best(r, each(tars, lambda o: lean_pull(o, True)))),
            ],
        )
        del tars
        layer = work / "layer.tar"
        subprocess.run(["tar", "-cf", str(layer), "-C", str(args.tree.parent),
                        args.tree.name], check=False, stderr=subprocess.DEVNULL)  # fmt: skip
        size = layer.stat().st_size / 2**20

        def opener() -> BinaryIO:
            return open(layer, "rb")

        report(
            f"2. a tar of {args.tree} ({size:.0f} MiB), headers only",
            [
                ("anchor: bytes only", *best(r, lambda: read_bytes(opener))),
                ("tarfile r| (stream)", *best(r, lambda: tarfile_stream(opener, False))),
                ("tarfile r: (seeking)", *best(r, lambda: tarfile_seeking(opener, False))),
                ("lean pull", *best(r, lambda: lean_pull(opener, False))),
                ("lean push", *best(r, lambda: lean_push(opener))),
            ],
        )
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
