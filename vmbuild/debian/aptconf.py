"""The host's apt sources: where packages come from when a spec's ``[debian]`` table
does not say (deb822 ``*.sources`` files and one-line ``sources.list`` entries)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822

from vmbuild.errors import SpecError

APT_DIR = Path("/etc/apt")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""


def _deb822_sources(path: Path) -> list[AptSource]:
    out: list[AptSource] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for para in Deb822.iter_paragraphs(f):
            if "deb" not in para.get("Types", "").split():
                continue
            if para.get("Enabled", "yes").lower() == "no":
                continue
            suites = tuple(para.get("Suites", "").split())
            comps = tuple(para.get("Components", "").split())
            signed = para.get("Signed-By", "").strip()
            for uri in para.get("URIs", "").split():
                out.append(AptSource(uri.rstrip("/"), suites, comps, signed))
    return out


def _one_line_sources(path: Path) -> list[AptSource]:
    out: list[AptSource] = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        signed = ""
        if words and words[0].startswith("["):
            opts: list[str] = []
            while words:
                word = words.pop(0)
                opts.append(word.strip("[]"))
                if word.endswith("]"):
                    break
            for opt in opts:
                if opt.startswith("signed-by="):
                    signed = opt.split("=", 1)[1]
        if len(words) >= 2:
            out.append(AptSource(words[0].rstrip("/"), (words[1],), tuple(words[2:]), signed))
    return out


def host_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled ``deb`` source, ``sources.list`` first, then ``sources.list.d``."""
    found: list[AptSource] = []
    one = apt_dir / "sources.list"
    if one.is_file():
        found += _one_line_sources(one)
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        for path in sorted(d.iterdir()):
            if path.suffix == ".sources":
                found += _deb822_sources(path)
            elif path.suffix == ".list":
                found += _one_line_sources(path)
    return found


def default_source(suite: str | None, apt_dir: Path = APT_DIR) -> AptSource:
    """The host source for ``suite`` (None: the first suite of the first source)."""
    sources = host_sources(apt_dir)
    for src in sources:
        if src.suites and (suite is None or suite in src.suites):
            return src
    raise SpecError(
        "no apt source on this host"
        + (f" serves suite {suite!r}" if suite else "")
        + f" (read {apt_dir}/sources.list and sources.list.d)",
        'set mirror = "http://..." and suite = "..." in the spec\'s [debian] table',
    )


def keyring_of(signed_by: str) -> Path:
    """The keyring a source's Signed-By names (a path), else Debian's archive keyring."""
    if signed_by and signed_by.startswith("/"):
        return Path(signed_by)
    return DEBIAN_KEYRING
