"""`vmbuild build SPEC [-o PATH|-]` and `vmbuild stream SPEC`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmbuild import progress, sources, tempdirs, timeouts
from vmbuild.builders import build, stream
from vmbuild.builders.result import BuildResult
from vmbuild.cli.common import add_command
from vmbuild.config import Loaded, attest_options, load_spec, output_options
from vmbuild.errors import SpecError
from vmbuild.oci.compress import COMPRESSIONS
from vmbuild.oci.output import FORMATS, AttestOptions, OutputOptions, distinct, resolve_out

if TYPE_CHECKING:
    from vmbuild.remotecache.remotes import Remotes

# remotecache.options.ENV, named here so that a build without remote caches needs none
# of remotecache (tests/unit/test_startup.py checks the two agree)
CACHE_REPO_ENV = "VMBUILD_CACHE_REPO"

# what a default --out ends in, by format and (for a docker-archive) compression
ARCHIVE_SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}
# a path for each output option, in the hint when it is empty
EXAMPLES = {
    "--out": "image.tar.gz",
    "--sbom": "image.spdx.json",
    "--provenance": "image.intoto.json",
}


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "build",
        help="build the image a spec describes",
        description="Build the image SPEC describes (any dockerTools function: buildImage, "
        "buildLayeredImage, streamLayeredImage, pullImage, exportImage, mergeImages) and "
        "print where it went. Without --out the image is ./NAME-TAG.tar.gz (the spec's "
        "name and tag; .tar.zst or .tar by --compress; NAME-TAG.oci.tar for oci-archive, "
        "a directory NAME-TAG for oci; rootfs.tar or NAME.tar for exportImage, .tar.gz or "
        ".tar.zst with --compress).",
        examples=[
            "vmbuild build image.toml",
            "vmbuild build image.toml -o - | podman load",
            "vmbuild build root.toml --shell-on-failure   # debug a failing runAsRoot",
        ],
    )
    p.add_argument("spec", type=Path, help="the spec file (TOML)")
    p.add_argument(
        "--out",
        "-o",
        metavar="PATH",
        help="where to write the image; - for stdout (an archive, never to a terminal); "
        "default ./NAME-TAG.tar.gz",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="docker-archive",
        help="docker-archive (default; docker/podman load), oci-archive, or oci (a layout "
        "directory)",
    )
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
        "included, and fail naming the step; 0 for no limit (default: $VMBUILD_TIMEOUT, "
        f"else {timeouts.DEFAULT:g}: an hour)",
    )
    p.add_argument(
        "--shell-on-failure",
        "--keep-vm-on-failure",
        action="store_true",
        help="when runAsRoot fails, keep the build VM up and open a shell in the failed "
        "tree (chrooted as the script was); leaving it tears everything down",
    )
    p.add_argument("--sbom", help="write an SBOM of the image here (SPDX 2.3 JSON)")
    p.add_argument("--sbom-format", help="spdx (default) or cyclonedx (CycloneDX 1.5 JSON)")
    p.add_argument("--provenance", help="write an in-toto SLSA v1 provenance here")
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
        "--timings", action="store_true", help="print where the build's time went (stderr)"
    )
    p.set_defaults(func=cmd_build)

    s = add_command(
        sub,
        "stream",
        help="write a streamLayeredImage or streamNixShellImage spec's image to stdout",
        description="Write the image a streamLayeredImage or streamNixShellImage spec "
        "describes to stdout as an uncompressed docker-archive, in one pass, as nixpkgs' "
        "stream script does.",
        examples=[
            "vmbuild stream app.toml | podman load",
            "vmbuild stream app.toml | gzip > app.tar.gz",
        ],
    )
    s.add_argument("spec", type=Path, help="the spec file (TOML)")
    s.set_defaults(func=cmd_stream)


def _safe(text: str) -> str:
    """``text`` as one file-name component (``team/app`` -> ``team-app``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "image"


def default_out(loaded: Loaded, opts: OutputOptions) -> Path:
    """``./NAME-TAG`` plus the format's suffix, named from the spec (``NAME`` alone when
    the tag is the content hash, unknown before the build)."""
    spec = loaded.spec
    name = getattr(spec, "name", None) or getattr(spec, "final_image_name", None)
    tag = getattr(spec, "tag", None) or getattr(spec, "final_image_tag", None)
    if not name:
        name = {"mergeImages": "merged", "exportImage": "rootfs"}.get(loaded.function, "image")
    stem = _safe(name) + (f"-{_safe(tag)}" if tag else "")
    if opts.format == "oci":
        return Path(stem)
    if opts.format == "oci-archive":
        return Path(stem + ".oci.tar")
    return Path(stem + ARCHIVE_SUFFIXES[opts.compression])


def cmd_build(args: argparse.Namespace) -> int:
    for option, given in (
        ("--out", args.out),
        ("--sbom", args.sbom),
        ("--provenance", args.provenance),
    ):
        if given == "":
            raise SpecError(
                f"{option} is empty", f"give the output's path, e.g. {option} {EXAMPLES[option]}"
            )
    timeout = (
        timeouts.parse(args.timeout, "--timeout")
        if args.timeout is not None
        else timeouts.from_env()
    )
    if args.shell_on_failure and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise SpecError(
            "--shell-on-failure needs a terminal (stdin and stdout)",
            "run it from an interactive shell, or drop the option",
        )
    loaded = load_spec(args.spec)
    opts = output_options(loaded, args.format, args.compress, args.level)
    out = default_out(loaded, opts) if args.out in (None, "-") else Path(args.out)
    attest = attest_options(loaded, out, _path(args.sbom), args.sbom_format, _path(args.provenance))
    _check_attest_paths(attest, None if args.out == "-" else out, args)
    opts = dataclasses.replace(opts, attest=attest)
    if args.locked:
        sources.LOCKED_ONLY.set(True)
    remotes, using_remotes = _remotes(args, loaded)
    progress_report = progress.Report(quiet=args.quiet, timings=args.timings)
    with (
        timeouts.limit(timeout),
        _failure_shell(args.shell_on_failure),
        _no_cache(args.no_cache),
        progress.reporting(progress_report),
        using_remotes,
    ):
        result = _build_to_stdout(loaded, opts) if args.out == "-" else build(loaded, out, opts)
        if remotes is not None:
            remotes.flush()  # the output is in place: Ctrl-C from here leaves it intact
    report = sys.stderr if args.out == "-" else sys.stdout
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True), file=report)
    elif args.out != "-":
        print(result.out)
    return 0


def _path(given: str | None) -> Path | None:
    return None if given is None else Path(given)


def _check_attest_paths(attest: AttestOptions, out: Path | None, args: argparse.Namespace) -> None:
    """Refuse, before any work, an SBOM or provenance path that cannot be written (each
    error naming its option), or two outputs that are one file (the last written would
    replace the other: an SBOM over the image)."""
    named: dict[str, Path] = {} if out is None else {"--out": out}
    for option, path, given in (
        ("--sbom", attest.sbom, args.sbom),
        ("--provenance", attest.provenance, args.provenance),
    ):
        if path is not None:
            name = option if given is not None else f"the spec's {option[2:]} file"
            resolve_out(path, directory=False, option=name)
            named[name] = path
    distinct(named)


def _remotes(
    args: argparse.Namespace, loaded: Loaded
) -> tuple[Remotes | None, contextlib.AbstractContextManager[None]]:
    """The build's remote caches, and the block that uses them. Without any named (the
    options, the spec, $VMBUILD_CACHE_REPO) the registry client is not even imported."""
    named = args.cache_from or args.cache_to or loaded.cache_from or loaded.cache_to
    if not named and not os.environ.get(CACHE_REPO_ENV, "").strip():
        return None, contextlib.nullcontext()
    from vmbuild import remotecache  # the registry client: not loaded by `vmbuild stream`

    remotes = remotecache.remotes_for(
        args.cache_from, args.cache_to, loaded.cache_from, loaded.cache_to
    )
    return remotes, remotecache.using(remotes)


def _no_cache(on: bool) -> contextlib.AbstractContextManager[None]:
    """``--no-cache``'s block. The step cache is imported only then (or by the step that
    looks it up)."""
    if not on:
        return contextlib.nullcontext()
    from vmbuild import stepcache

    return stepcache.disabled()


def _failure_shell(on: bool) -> contextlib.AbstractContextManager[None]:
    if not on:
        return contextlib.nullcontext()
    from vmbuild.vm import shell  # only then: it is the VM's side

    return shell.enabled()


def _build_to_stdout(loaded: Loaded, opts: OutputOptions) -> BuildResult:
    """Build into a private temporary file, then copy it to stdout."""
    if opts.format == "oci":
        raise SpecError(
            "--out - writes an archive, and --format oci is a directory",
            "use --format oci-archive or docker-archive, or give --out a directory",
        )
    _refuse_terminal()
    with tempdirs.workdir() as tmp:
        result = build(loaded, tmp / "image", opts)
        with open(tmp / "image", "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()
    return dataclasses.replace(result, out=Path("-"))


def _refuse_terminal() -> None:
    if sys.stdout.isatty():
        raise SpecError(
            "refusing to write an image to a terminal", "pipe it: | podman load, or > image.tar"
        )


def cmd_stream(args: argparse.Namespace) -> int:
    loaded = load_spec(args.spec)
    _refuse_terminal()
    stream(loaded, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0
