"""`vmbuild build SPEC --out PATH` and `vmbuild stream SPEC`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from vmbuild import progress, stepcache, timeouts
from vmbuild.builders import build, stream
from vmbuild.config import attest_options, load_spec, output_options
from vmbuild.errors import SpecError
from vmbuild.oci.compress import COMPRESSIONS
from vmbuild.oci.output import FORMATS


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build the image a spec describes")
    p.add_argument("spec", type=Path, help="the spec file (TOML)")
    p.add_argument("--out", "-o", required=True, help="where to write the image")
    p.add_argument("--format", choices=FORMATS, default="docker-archive")
    p.add_argument(
        "--compress",
        choices=COMPRESSIONS,
        default=None,
        help="gzip (default; none for pullImage, the last input's for mergeImages), zstd or none",
    )
    p.add_argument(
        "--level",
        type=int,
        default=None,
        help="compression level: gzip 0-9 (default 1: ISA-L, fast; 4-9: zlib, "
        "6 = pigz -6's size), zstd 1-19",
    )
    p.add_argument("--json", action="store_true", help="print what was built as JSON")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        help="stop a build VM (runAsRoot, exportImage's merge) that runs longer, boot "
        "included, and fail naming the step (default: $VMBUILD_TIMEOUT, else no limit)",
    )
    p.add_argument("--sbom", type=Path, help="write an SBOM of the image here (SPDX 2.3 JSON)")
    p.add_argument("--sbom-format", help="spdx (default) or cyclonedx (CycloneDX 1.5 JSON)")
    p.add_argument("--provenance", type=Path, help="write an in-toto SLSA v1 provenance here")
    p.add_argument(
        "--locked",
        action="store_true",
        help="fail if the spec's Debian packages are not all in its lock file",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="run every root step (runAsRoot) even when the step cache has its result",
    )
    p.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="docker://HOST/REPO",
        help="a remote cache to ask on a local miss (repeatable; default: the spec's "
        "cacheFrom, else $VMBUILD_CACHE_REPO)",
    )
    p.add_argument(
        "--cache-to",
        metavar="docker://HOST/REPO",
        help="push this build's cache entries there afterwards (default: the spec's cacheTo, "
        "else $VMBUILD_CACHE_REPO)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="print no progress (errors still show)"
    )
    p.add_argument(
        "--timings", action="store_true", help="print where the build's time went (stderr)"
    )
    p.set_defaults(func=cmd_build)

    s = sub.add_parser(
        "stream", help="write a streamLayeredImage or streamNixShellImage spec's image to stdout"
    )
    s.add_argument("spec", type=Path)
    s.set_defaults(func=cmd_stream)


def cmd_build(args: argparse.Namespace) -> int:
    from vmbuild import remotecache  # the registry client: not loaded by `vmbuild stream`

    if not args.out:
        raise SpecError("--out is empty", "give the output's path, e.g. --out image.tar.gz")
    timeout = (
        timeouts.parse(args.timeout, "--timeout")
        if args.timeout is not None
        else timeouts.from_env()
    )
    loaded = load_spec(args.spec)
    opts = output_options(loaded, args.format, args.compress, args.level)
    attest = attest_options(loaded, Path(args.out), args.sbom, args.sbom_format, args.provenance)
    opts = dataclasses.replace(opts, attest=attest)
    if args.locked:
        from vmbuild.debian.packages import LOCKED_ONLY

        LOCKED_ONLY.set(True)
    remotes = remotecache.remotes_for(
        args.cache_from, args.cache_to, loaded.cache_from, loaded.cache_to
    )
    report = progress.Report(quiet=args.quiet, timings=args.timings)
    with (
        timeouts.limit(timeout),
        stepcache.disabled(args.no_cache),
        progress.reporting(report),
        remotecache.using(remotes),
    ):
        result = build(loaded, Path(args.out), opts)
        if remotes is not None:
            remotes.flush()  # the output is in place: Ctrl-C from here leaves it intact
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        print(result.out)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    loaded = load_spec(args.spec)
    if sys.stdout.isatty():
        from vmbuild.errors import VmbuildError

        raise VmbuildError("refusing to write an image to a terminal", "pipe it: | docker load")
    stream(loaded, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0
