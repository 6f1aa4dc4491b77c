"""The Debian packages of an image, from the dpkg database in its layers.

``var/lib/dpkg/status`` is taken from the topmost layer that has it (unless a layer
above whites it out) and parsed with python-debian; every package dpkg still counts as
there (all states but ``not-installed`` and ``config-files``) becomes a component with
its version, architecture and purl, depending on the packages its ``Depends`` and
``Pre-Depends`` name. A package's license is read from its copyright file where that is
machine-readable and names an SPDX license.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

from debian.deb822 import Deb822

from vmbuild.oci.image import Layer
from vmbuild.sbom.inventory import Component, deb_component
from vmbuild.sbom.layerfiles import MAX_COPYRIGHT, LayerScan, hides, scan
from vmbuild.sbom.licenses import licensing

STATUS = "var/lib/dpkg/status"
GONE = {"not-installed", "config-files"}
_NAME = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)")
MAX_EXPRESSION = 1024  # nor a license expression longer than this (Debian's are < 200)
_BLANK = re.compile(r"\n[ \t]*\n")
_FILES = re.compile(r"^Files:(.*(?:\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)


def scan_layers(layers: Sequence[Layer], where: str) -> list[LayerScan]:
    return [scan(layer, [STATUS], f"{where}: layer {i + 1}") for i, layer in enumerate(layers)]


def visible(scans: Sequence[LayerScan], name: str) -> bytes | None:
    """The bytes of ``name`` as the merged image shows it (None: not there)."""
    for s in reversed(scans):
        if name in s.kept:
            return s.kept[name]
        if hides(s, name):
            return None
    return None


def packages(scans: Sequence[LayerScan]) -> list[Component]:
    """The image's installed Debian packages as components."""
    status = visible(scans, STATUS)
    if status is None:
        return []
    paragraphs = list(Deb822.iter_paragraphs(status.decode("utf-8", "replace").splitlines()))
    found: dict[str, tuple[Deb822, str]] = {}
    by_name: dict[str, list[str]] = {}
    for p in paragraphs:
        name, version = p.get("Package"), p.get("Version")
        state = (p.get("Status") or "").split()
        if not name or not version or (state and state[-1] in GONE):
            continue
        arch = p.get("Architecture") or None
        ref = f"deb:{name}:{arch or ''}"
        found[ref] = (p, arch or "")
        by_name.setdefault(name, []).append(ref)
    out = []
    for ref, (p, arch) in sorted(found.items()):
        depends = {r for dep in _depends(p) for r in by_name.get(dep, []) if r != ref}
        copyright_file = visible(scans, f"usr/share/doc/{p['Package']}/copyright")
        out.append(
            deb_component(
                p["Package"],
                p["Version"],
                arch or None,
                license=license_of(copyright_file),
                depends=depends,
            )
        )
    return out


def _depends(p: Deb822) -> list[str]:
    names = []
    for field in ("Pre-Depends", "Depends"):
        for alternative in re.split(r"[,|]", p.get(field) or ""):
            m = _NAME.match(alternative)
            if m:
                names.append(m.group(1))
    return names


def license_of(data: bytes | None) -> str | None:
    """The SPDX license of a machine-readable copyright file's ``Files: *``, if it is one.
    A file over :data:`MAX_COPYRIGHT` bytes or an expression over :data:`MAX_EXPRESSION`
    characters is not parsed (None: NOASSERTION): parsing grows faster than the text."""
    if data is None or len(data) > MAX_COPYRIGHT:
        return None
    from debian.copyright import Copyright

    with contextlib.suppress(Exception):
        text = _header_and_star(data.decode("utf-8", "replace"))
        parsed = Copyright(text.splitlines(), strict=False)
        para = parsed.find_files_paragraph("*")
        if para is None or para.license is None:
            return None
        synopsis = str(getattr(para.license, "synopsis", "")).strip()
        if len(synopsis) > MAX_EXPRESSION:
            return None
        spdx = licensing()
        if synopsis and not spdx.validate(synopsis).errors:
            return str(spdx.parse(synopsis))
    return None


def _header_and_star(text: str) -> str:
    """A copyright file's header paragraph and those whose ``Files`` match the name
    ``*`` (python-debian's parse of the whole file grows with the square of its
    paragraphs: 5 s for a megabyte of them)."""
    paragraphs = _BLANK.split(text)
    kept = paragraphs[:1]
    for p in paragraphs[1:]:
        m = _FILES.search(p)
        if m and any(set(word) <= {"*", "?"} for word in m.group(1).split()):
            kept.append(p)
    return "\n\n".join(kept)
