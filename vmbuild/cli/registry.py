"""The ``prefetch`` and ``push`` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild.cli.common import add_command
from vmbuild.errors import SpecError
from vmbuild.registry.progress import Progress, Silent
from vmbuild.registry.reference import parse_docker_url

if TYPE_CHECKING:
    from vmbuild.registry.auth import Credentials
    from vmbuild.registry.reference import Reference
    from vmbuild.registry.repush import PushResult

COMPRESSIONS = ("gzip", "zstd", "none")

# Each command imports its own machinery when it runs: a re-push of an unchanged image
# is a few HEAD requests, and Python's imports would otherwise be most of its time.


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "prefetch",
        help="resolve a tag to a digest, pull the image and print a pullImage spec",
        description="Like nix-prefetch-docker: resolve --image-name:--image-tag to its "
        "digest, pull it, and print a whole pullImage spec (TOML, with its hash) on "
        "stdout; `vmbuild build` reads it as it is. Progress and a summary go to stderr.",
        examples=[
            "vmbuild prefetch --image-name library/debian --image-tag 12 > debian.toml",
            "vmbuild build debian.toml -o debian-12.tar",
            "vmbuild prefetch --image-name localhost:5000/app --image-tag 1 --json",
        ],
    )
    p.add_argument(
        "--image-name", required=True, help="the repository, e.g. nixos/nix or host:5000/team/app"
    )
    p.add_argument("--image-tag", default="latest", help="the tag to resolve (default latest)")
    p.add_argument("--os", help="the platform's OS (default linux)")
    p.add_argument("--arch", help="default the host's (x86_64 and amd64 both work)")
    p.add_argument("--final-image-name", help="the name the image gets (default --image-name)")
    p.add_argument("--final-image-tag", help="the tag the image gets (default --image-tag)")
    p.add_argument(
        "--format",
        choices=("docker-archive", "oci-archive"),
        default="docker-archive",
        help="the format the hash is for (what the build's --format will be)",
    )
    p.add_argument("--out", type=Path, help="also keep the pulled image here")
    p.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of the spec"
    )
    _tls_option(p)
    p.set_defaults(func=cmd_prefetch)

    q = add_command(
        sub,
        "push",
        help="push an image archive or OCI layout to a registry",
        description="Upload IMAGE to DEST: only the blobs the registry lacks, then the "
        "manifest; print the manifest's digest. Credentials come from --creds, else "
        "--authfile, else $REGISTRY_AUTH_FILE or Docker's config.json (and its helpers).",
        examples=[
            "vmbuild push app-1.tar.gz docker://localhost:5000/app:1",
            "vmbuild push ./layout docker://registry.example/team/app:1 --creds ci:$TOKEN",
            "vmbuild push app.tar docker://host:5000/app:1 --digestfile app.digest --json",
        ],
    )
    q.add_argument("image", type=Path, help="docker-archive (gzip or not), OCI archive or layout")
    q.add_argument("dest", help="docker://HOST/NAME:TAG")
    q.add_argument(
        "--compress",
        choices=COMPRESSIONS,  # oci.compress's, which imports the compressors
        default="gzip",
        help="how uncompressed layers are sent (default gzip; compressed ones go as they are)",
    )
    q.add_argument(
        "--level", type=int, help="compression level: gzip 0-9 (0-3 ISA-L, 4-9 zlib), zstd 1-19"
    )
    q.add_argument(
        "--authfile",
        type=Path,
        metavar="FILE",
        help="credentials file (containers-auth.json or Docker's config.json format)",
    )
    q.add_argument(
        "--creds",
        metavar="USER[:PASS]",
        help="log in as USER (the password is asked for when not given)",
    )
    q.add_argument(
        "--digestfile", type=Path, metavar="FILE", help="write the manifest's digest to FILE"
    )
    q.add_argument("--json", action="store_true", help="print the result as JSON")
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
    from vmbuild.oci.output import OutputOptions
    from vmbuild.registry.manifest import parse_platform
    from vmbuild.registry.prefetch import prefetch, report

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
        progress=Silent() if args.quiet or args.json else None,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    elif args.quiet:
        sys.stdout.write(result.toml())
    else:
        report(result)
    return 0


def credentials(args: argparse.Namespace, host: str, path: str) -> Credentials | None:
    """--creds, else the --authfile's entry for ``host``/``path`` (None: the default
    auth file decides)."""
    from vmbuild.registry.auth import Credentials, load_credentials

    if args.creds is not None:
        user, colon, password = args.creds.partition(":")
        if not user:
            raise SpecError("--creds has no user name", "give --creds USER[:PASSWORD]")
        if not colon:
            if not sys.stdin.isatty():
                raise SpecError(
                    f"--creds {user} has no password and there is no terminal to ask on",
                    "give --creds USER:PASSWORD, or use --authfile",
                )
            import getpass

            password = getpass.getpass(f"password for {user}@{host}: ")
        return Credentials(user, password, "--creds")
    if args.authfile is not None:
        if not args.authfile.is_file():
            raise SpecError(f"--authfile {args.authfile} does not exist", "check the path")
        return load_credentials(host, path, args.authfile)
    return None


def cmd_push(args: argparse.Namespace) -> int:
    dest = parse_docker_url(args.dest)
    creds = credentials(args, dest.repo.host, dest.repo.path)
    if args.digestfile is not None:
        from vmbuild.oci.output import resolve_out

        resolve_out(
            args.digestfile, directory=False, option="--digestfile"
        )  # a bad path fails before the upload
    quiet = args.quiet or args.json
    result = _unchanged(args, dest, creds) or _push(args, dest, creds, quiet)
    if not quiet:
        print(
            f"pushed {dest} ({result.uploaded} uploaded, {result.mounted} mounted, "
            f"{result.present} already there)",
            file=sys.stderr,
        )
    if args.digestfile is not None:
        from vmbuild.oci.output import atomic_file, resolve_out

        with atomic_file(resolve_out(args.digestfile, False, "--digestfile")) as f:
            f.write(result.digest.encode())
    if args.json:
        print(
            json.dumps(
                {
                    "digest": result.digest,
                    "destination": str(dest),
                    "uploaded": result.uploaded,
                    "mounted": result.mounted,
                    "present": result.present,
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(result.digest)
    return 0


def _unchanged(
    args: argparse.Namespace, dest: Reference, creds: Credentials | None
) -> PushResult | None:
    """The push's result when the registry already has what it would make (one HEAD,
    see registry/repush.py), else None."""
    from vmbuild.registry.repush import PushResult, unchanged

    there = unchanged(
        args.image,
        dest,
        args.compress,
        args.level,
        tls_verify=args.tls_verify,
        credentials=creds,
    )
    return PushResult(there.digest, 0, 0, there.blobs) if there else None


def _push(
    args: argparse.Namespace, dest: Reference, creds: Credentials | None, quiet: bool
) -> PushResult:
    from vmbuild.registry.push import push

    return push(
        args.image,
        dest,
        tls_verify=args.tls_verify,
        compression=args.compress,
        level=args.level,
        jobs=max(1, args.jobs),
        progress=Silent() if quiet else Progress("pushed"),
        credentials=creds,
    )
