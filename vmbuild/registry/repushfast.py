"""``vmbuild push`` of an unchanged image to a registry on this machine, before argparse.

A re-push whose registry still holds what the last push of the same file made is one
HEAD of the manifest (:mod:`.repush`). Through the normal command line that costs
Python's start-up plus ~80 ms of imports (argparse, logging, http.client and the email
package it loads, the auth and reference modules), against skopeo's whole re-push of
58-70 ms (bench/bench_registry.py). So ``python -m vmbuild`` sends one narrow shape of
command line here first, and this module imports only os, sys, json, ``_socket`` and
(for SIGTERM and SIGHUP, handled as the full path handles them) vmbuild.signals:

    vmbuild [-q|--quiet] push [-q|--quiet] [--json] [--tls-verify=BOOL] IMAGE docker://DEST

where DEST is ``localhost``, ``127.0.0.1`` or ``[::1]`` (with an optional port), a
repository path and an optional tag. Such a registry is never proxied and the full path
reaches it over plain HTTP when it does not speak TLS; ``--tls-verify`` changes nothing
for it (a registry on this machine is trusted without certificate checks). The HTTP is a
hand-written HTTP/1.1 HEAD over a socket: http.client with the email package it imports
costs 27 ms of the ~60 ms budget (``python -X importtime``), and the one request needs
only a status line and one header.

The rule: this path answers exactly what the full path would, or not at all. It answers
only when the record of the last push exists for the file's identity and the push's
options, the auth file the full path reads names no credential or helper that could
apply to the host, and the registry answers the HEAD with 200 and the remembered digest.
Anything else (another option, a TLS-speaking or unreachable registry, a 401, a
redirect, a 404, another digest, any exception) returns None, and the normal command
line does the whole push, with its own messages and errors.
"""

from __future__ import annotations

import _socket  # socket.py's enum conversions of its constants cost ~3 ms; see head_digest
import json
import os
import sys

# What the full path uses (pinned by tests/unit/registry/test_repushfast.py).
FORMAT = "1"  # repush.FORMAT
USER_AGENT = "vmbuild/0.1"  # client.USER_AGENT
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
TIMEOUT = 60.0  # client.Client's
MAX_HEAD = 64 << 10  # the most of an answer's head read
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
QUIET = ("-q", "--quiet")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


class Shape:
    """The command line, when it has the narrow shape (see the module docstring)."""

    __slots__ = ("host", "image", "json", "netloc", "path", "port", "quiet", "tag")

    def __init__(self, image: str, netloc: str, path: str, tag: str) -> None:
        self.image, self.netloc, self.path, self.tag = image, netloc, path, tag
        host, colon, port = netloc.rpartition(":") if not netloc.endswith("]") else ("", "", "")
        self.host, self.port = (host, int(port)) if colon else (netloc, 80)
        self.quiet = self.json = False

    @property
    def dest(self) -> str:
        """The destination as the full path prints it (``str(Reference)``)."""
        return f"{self.netloc}/{self.path}:{self.tag}"


def shape(argv: list[str]) -> Shape | None:
    """``argv`` as a :class:`Shape`, or None when it has another form."""
    quiet = False
    rest = list(argv)
    while rest and rest[0] in QUIET:
        quiet = True
        rest.pop(0)
    if not rest or rest[0] != "push":
        return None
    positional: list[str] = []
    as_json = False
    for arg in rest[1:]:
        if arg in QUIET:
            quiet = True
        elif arg == "--json":
            as_json = True
        elif arg.startswith("--tls-verify="):
            if arg.partition("=")[2].lower() not in TRUE + FALSE:
                return None  # the full path's error
        elif arg.startswith("-") or not arg:
            return None
        else:
            positional.append(arg)
    if len(positional) != 2:
        return None
    found = _destination(positional[0], positional[1])
    if found is not None:
        found.quiet, found.json = quiet, as_json
    return found


def _destination(image: str, text: str) -> Shape | None:
    """``docker://LOCALHOST[:PORT]/PATH[:TAG]`` (no digest), when the full path reads it
    so too (the rules of oci/names.py, checked without compiling its regexes)."""
    if not text.startswith("docker://") or "@" in text:
        return None
    host, slash, name = text[len("docker://") :].partition("/")
    tag = "latest"
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    local = next((n for n in LOCAL_NAMES if host == n or host.startswith(f"{n}:")), None)
    if not slash or local is None or not is_path(name) or not is_tag(tag):
        return None
    port = host[len(local) + 1 :]
    if host != local and not (0 < len(port) <= 5 and port.isascii() and port.isdigit()):
        return None
    if not 0 < int(port or "80") < 65536:
        return None  # the full path's error
    return Shape(image, host, name, tag)


_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_FIRST = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def is_tag(tag: str) -> bool:
    """names.TAG_RE's rule: 1-128 of ``[A-Za-z0-9_.-]``, not starting with . or -."""
    return 0 < len(tag) <= 128 and tag[0] in _TAG_FIRST and not set(tag) - _TAG_FIRST - {".", "-"}


def is_path(path: str) -> bool:
    """names.PATH_RE's rule: ``/``-separated components of lowercase letters and
    digits joined by ``.``, ``_``, ``__`` or any run of ``-``."""
    for component in path.split("/"):
        run = ""  # the separators since the last letter or digit
        if not component or component[0] not in _LOWER or component[-1] not in _LOWER:
            return False
        for c in component:
            if c in _LOWER:
                if run not in ("", ".", "_", "__") and run != "-" * len(run):
                    return False
                run = ""
            elif c in "._-":
                run += c
            else:
                return False
    return True


def record_path(image: str, compression: str = "gzip", level: int | None = None) -> str | None:
    """Where :func:`.repush.remember` keeps the record for ``image`` now (None: the
    image has no identity); the same name :func:`.repush._record` gives."""
    try:
        st = os.stat(image)
        if st.st_mode & 0o170000 == 0o040000:  # a layout: known by its index.json
            st = os.stat(os.path.join(image, "index.json"))
    except (OSError, ValueError):
        return None
    ident = f"{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}"
    return os.path.join(_cache_dir(), "pushed", f"v{FORMAT}-{ident}-{compression}-{level}.json")


def _cache_dir() -> str:
    """cache.cache_dir(), without pathlib's objects."""
    explicit = os.environ.get("VMBUILD_CACHE_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "vmbuild")


def _auth_file() -> str:
    """auth.auth_file(): the file whose credentials the full path would load."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return explicit
    docker_config = os.environ.get("DOCKER_CONFIG")
    base = docker_config or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def no_credentials(netloc: str) -> bool:
    """Whether the full path would find no login for ``netloc`` without running a
    helper or failing on the file (any entry or helper that could apply: False)."""
    try:
        with open(_auth_file(), "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False  # the full path reports it
    if not isinstance(data, dict):
        return True
    if data.get("credsStore") or data.get("credHelpers"):
        return False
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return True
    for key in auths:  # every key load_credentials tries is [scheme://]netloc[/...]
        bare = str(key).partition("://")[2] if "://" in str(key) else str(key)
        if bare.partition("/")[0] == netloc:
            return False
    return True


def _remembered(path: str) -> tuple[str, str, int] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    digest, media_type, blobs = data.get("digest"), data.get("media_type"), data.get("blobs")
    if isinstance(digest, str) and isinstance(media_type, str) and type(blobs) is int:
        return digest, media_type, blobs
    return None


def head_digest(sh: Shape, media_type: str) -> str | None:
    """The ``Docker-Content-Digest`` of a 200 answer to the manifest's HEAD over plain
    HTTP; None for any other answer."""
    netloc = sh.netloc
    address = "::1" if sh.host == "[::1]" else sh.host
    accept = f"{media_type}, {MT_OCI_MANIFEST}, {MT_DOCKER_MANIFEST}"
    request = (
        f"HEAD /v2/{sh.path}/manifests/{sh.tag} HTTP/1.1\r\n"
        f"Host: {netloc}\r\nAccept-Encoding: identity\r\n"
        f"User-Agent: {USER_AGENT}\r\nAccept: {accept}\r\n\r\n"
    ).encode()
    head = _exchange(address, sh.port, request)
    if head is None:
        return None
    lines = head.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    version, _, status = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or status.partition(" ")[0] != "200":
        return None
    digests = [
        value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
        if name.strip().lower() == "docker-content-digest"
    ]
    return digests[0] if len(digests) == 1 else None


def _exchange(host: str, port: int, request: bytes) -> bytes | None:
    """Send ``request`` over a connection to ``host`` and return the answer up to its
    blank line (None: no whole head). The connection is made as
    socket.create_connection makes it (each address in turn), with ``_socket`` and the
    host as bytes (no IDNA codec to load)."""
    sock = None
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in _socket.getaddrinfo(
        host.encode("ascii"), port, 0, _socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(TIMEOUT)
            sock.connect(address)
            break
        except OSError as exc:
            error = exc
            sock.close()
            sock = None
    if sock is None:
        raise error
    try:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk or len(head) > MAX_HEAD:
                return None
            head += chunk
        return head
    finally:
        sock.close()


def main(argv: list[str]) -> int | None:
    """The exit status of a push answered here, or None: the normal command line must
    run (nothing has been printed then)."""
    try:
        sh = shape(argv)
        if sh is None:
            return None
        record = record_path(sh.image)
        known = _remembered(record) if record else None
        if known is None or not no_credentials(sh.netloc):
            return None
        digest, media_type, blobs = known
        from vmbuild import signals  # SIGTERM and SIGHUP as the full path has them

        with signals.handlers():
            if head_digest(sh, media_type) != digest:
                return None
    except KeyboardInterrupt as exc:
        from vmbuild import signals

        print(f"vmbuild: {signals.describe(exc)}", file=sys.stderr)
        return signals.exit_status(exc)
    except Exception:  # anything odd: the full path decides
        return None
    return _report(sh, digest, blobs)


def _report(sh: Shape, digest: str, blobs: int) -> int:
    """What cli/registry.py's cmd_push prints for a push that found the image there."""
    try:
        if not (sh.quiet or sh.json):
            print(
                f"pushed {sh.dest} (0 uploaded, 0 mounted, {blobs} already there)",
                file=sys.stderr,
            )
        if sh.json:
            result = {"digest": digest, "destination": sh.dest, "uploaded": 0, "mounted": 0}
            print(json.dumps({**result, "present": blobs}, indent=2, sort_keys=True))
        else:
            print(digest)
        sys.stdout.flush()
    except BrokenPipeError:
        return 141
    return 0
