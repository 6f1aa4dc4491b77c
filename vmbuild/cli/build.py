"""`vmbuild build SPEC --out PATH` and `vmbuild stream SPEC`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vmbuild import timeouts
from vmbuild.builders import build, stream
from vmbuild.config import load_spec, output_options
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
    p.set_defaults(func=cmd_build)

    s = sub.add_parser("stream", help="write a streamLayeredImage spec's image to stdout")
    s.add_argument("spec", type=Path)
    s.set_defaults(func=cmd_stream)


def cmd_build(args: argparse.Namespace) -> int:
    if not args.out:
        raise SpecError("--out is empty", "give the output's path, e.g. --out image.tar.gz")
    timeout = (
        timeouts.parse(args.timeout, "--timeout")
        if args.timeout is not None
        else timeouts.from_env()
    )
    loaded = load_spec(args.spec)
    opts = output_options(loaded, args.format, args.compress, args.level)
    with timeouts.limit(timeout):
        result = build(loaded, Path(args.out), opts)
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
