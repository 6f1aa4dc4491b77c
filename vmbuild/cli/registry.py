"""The ``prefetch`` and ``push`` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, cast

from vmbuild.oci.compress import COMPRESSIONS, Compression
from vmbuild.oci.output import OutputOptions
from vmbuild.registry.manifest import parse_platform
from vmbuild.registry.prefetch import prefetch, report
from vmbuild.registry.progress import Progress, Silent
from vmbuild.registry.push import push
from vmbuild.registry.reference import parse_docker_url


def register(sub: Any) -> None:
    p = sub.add_parser(
        "prefetch",
        help="resolve a tag to a digest, pull the image and print a pullImage spec",
        description="Like nix-prefetch-docker: prints TOML for a pullImage spec on stdout.",
    )
    p.add_argument("--image-name", required=True, help="e.g. nixos/nix or host:5000/team/app")
    p.add_argument("--image-tag", default="latest")
    p.add_argument("--os", help="default linux")
    p.add_argument("--arch", help="default the host's (x86_64 and amd64 both work)")
    p.add_argument("--final-image-name", help="default --image-name")
    p.add_argument("--final-image-tag", help="default --image-tag")
    p.add_argument(
        "--format",
        choices=("docker-archive", "oci-archive"),
        default="docker-archive",
        help="the format the hash is for (what the build's --format will be)",
    )
    p.add_argument("--out", type=Path, help="also keep the pulled image here")
    _tls_option(p)
    p.set_defaults(func=cmd_prefetch)

    q = sub.add_parser(
        "push",
        help="push an image archive or OCI layout to a registry",
        description="Uploads only the blobs the registry lacks, then the manifest.",
    )
    q.add_argument("image", type=Path, help="docker-archive (gzip or not), OCI archive or layout")
    q.add_argument("dest", help="docker://HOST/NAME:TAG")
    q.add_argument(
        "--compress",
        choices=COMPRESSIONS,
        default="gzip",
        help="how uncompressed layers are sent (default gzip; compressed ones go as they are)",
    )
    q.add_argument(
        "--level", type=int, help="compression level: gzip 0-9 (0-3 ISA-L, 4-9 zlib), zstd 1-19"
    )
    _tls_option(q)
    q.add_argument("--jobs", type=int, default=4, help="parallel uploads (default 4)")
    q.set_defaults(func=cmd_push)


def _bool(text: str) -> bool:
    value = text.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value in ("true", "1", "yes")


def _tls_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-verify",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="check TLS certificates and never use plain HTTP (default true; "
        "plain HTTP is always allowed to localhost)",
    )


def cmd_prefetch(args: argparse.Namespace) -> int:
    platform = parse_platform(args.os, args.arch, "--arch")
    result = prefetch(
        args.image_name,
        args.image_tag,
        platform,
        final_image_name=args.final_image_name,
        final_image_tag=args.final_image_tag,
        opts=OutputOptions(args.format, "none"),
        tls_verify=args.tls_verify,
        keep=args.out,
        os_given=args.os is not None,
        arch_given=args.arch is not None,
        progress=Silent() if args.quiet else None,
    )
    if args.quiet:
        sys.stdout.write(result.toml())
    else:
        report(result)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    dest = parse_docker_url(args.dest)
    result = push(
        args.image,
        dest,
        tls_verify=args.tls_verify,
        compression=cast(Compression, args.compress),
        level=args.level,
        jobs=max(1, args.jobs),
        progress=Silent() if args.quiet else Progress("pushed"),
    )
    if not args.quiet:
        print(
            f"pushed {dest} ({result.uploaded} uploaded, {result.mounted} mounted, "
            f"{result.present} already there)",
            file=sys.stderr,
        )
    print(result.digest)
    return 0
