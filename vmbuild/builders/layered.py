"""buildLayeredImage and streamLayeredImage.

The contents' closures, helpers and the programs the config names become a graph of
content units (:mod:`vmbuild.units.graph`); the most popular units get a layer each,
the rest share one (:mod:`vmbuild.layering.popularity`); the customisation layer (the
contents' trees, extraCommands, fakeRootCommands) comes last. Every layer's files have
the spec's ``mtime`` (default 1970-01-01T00:00:01Z) whatever its ``created``, and unit
layers are owned by 0:0, so images built on one host from the same libraries share those
layers. ``stream`` writes the uncompressed
docker-archive; ``build`` writes the same bytes through the compressor (or an OCI
layout/archive with compressed layers).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from vmbuild import tempdirs
from vmbuild.builders.basepull import base_path, base_ref
from vmbuild.builders.imageconfig import default_tag, image_config
from vmbuild.builders.result import BuildResult, recording, result_for
from vmbuild.config.common import created_epoch
from vmbuild.config.layered import ClosureItem, LayeredSpec
from vmbuild.errors import SpecError
from vmbuild.hoststeps.custom import Custom, customisation
from vmbuild.layering.popularity import Layering, choose_layers
from vmbuild.oci import layer as layer_writer
from vmbuild.oci.blocks import BlockWriter, widen_pipe
from vmbuild.oci.compress import COMPRESS_CHUNK, compressor
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.output import OutputOptions, atomic_file, write_image
from vmbuild.oci.reader import BaseImage, read_image
from vmbuild.oci.tree import Tree
from vmbuild.sources import Content, Item, contents
from vmbuild.streaming.lazy import FileLayer, LazyLayer, TreeLayer
from vmbuild.streaming.stream import write_streaming
from vmbuild.units.elf import elf_kind
from vmbuild.units.elfcache import ElfCache
from vmbuild.units.graph import Graph, config_programs, tree_of
from vmbuild.units.helpers import Helper, add_helper

if TYPE_CHECKING:
    from vmbuild.sbom.attest import Record

log = logging.getLogger("vmbuild")


@dataclass
class Assembled:
    base: BaseImage | None
    layers: list[LazyLayer]
    comments: list[str]
    graph: Graph | None = None
    custom: Custom | None = None
    found: list[Content] = field(default_factory=list)  # the content sources'


def unit_graph(
    spec: LayeredSpec, workdir: Path, found: list[Content]
) -> tuple[Graph, Tree, list[str]]:
    """The unit graph, and the tree of the contents' plain paths (customisation layer).

    With ``includeStorePaths = false`` the graph is empty: closures, helpers, the content
    sources' items and the config's programs stay out, as nixpkgs leaves out store paths
    (for a mounted /usr).
    """
    if not spec.include_store_paths:
        tree = Tree()
        for item in spec.contents:
            if isinstance(item, Path):
                tree.add_root(item)
        return Graph(), tree, []
    elf = ElfCache(str(item.path) for item in spec.contents if isinstance(item, ClosureItem))
    graph = Graph(read_elf=elf.read)
    for content in found:
        content.add_units(graph)
    tree = Tree()
    helpers: list[str] = []
    for i, item in enumerate(spec.contents):
        if isinstance(item, Item):
            continue
        if isinstance(item, ClosureItem):
            graph.path(str(item.path), f"contents[{i}]")
        elif isinstance(item, Helper):
            helper_tree = Tree()
            add_helper(helper_tree, item, workdir / f"helper-{i}")
            helpers.append(graph.tree(f"helper:{item.name}:{i}", helper_tree))
        else:
            tree.add_root(item)
    graph.settle_trees(helpers)
    for program in config_programs(spec.config or {}):
        # A path the contents provide (binSh's /bin/sh) is not taken from the host.
        if any(content.provides(program) for content in found):
            continue
        if program.lstrip("/") not in tree.entries and not graph.provides(program):
            graph.path(program, "config")
    graph.settle_trees(helpers)
    elf.save()
    return graph, graph.relocate(tree), helpers


def add_references(graph: Graph, custom: Custom, helpers: list[str]) -> None:
    """Host programs the customisation layer links to come with their closures, as
    nixpkgs brings the store paths a customisation layer references."""
    added = False
    for target in custom.link_targets():
        real = os.path.realpath(target)
        if not graph.provides(target) and elf_kind(real) is not None:
            graph.path(target, "a symlink in the customisation layer")
            added = True
    if added:
        graph.settle_trees(helpers)


def check_budget(spec: LayeredSpec, base_layers: int, has_units: bool) -> int:
    """Layers left for content units; fails if maxLayers cannot hold the image."""
    slots = spec.max_layers - base_layers - 1
    if slots < (1 if has_units else 0):
        need = base_layers + 1 + (1 if has_units else 0)
        raise SpecError(
            f"maxLayers = {spec.max_layers} is too small: the base image has {base_layers} "
            f"layers, plus {'one for the content units and ' if has_units else ''}"
            "one for the customisation layer",
            f"set maxLayers to at least {need} (at most 125)",
        )
    return slots


def assemble(spec: LayeredSpec, workdir: Path, remote: bool = True) -> Assembled:
    """The image's parts; ``remote``: the content sources' layers may come from the
    remote caches (not when an SBOM needs the packages' files)."""
    base = read_image(base_path(spec.from_image), workdir) if spec.from_image else None
    found = []
    if spec.include_store_paths:
        found = contents(spec.contents, spec.tables, spec.architecture, workdir, remote)
    graph, tree, helpers = unit_graph(spec, workdir, found)
    mtime = created_epoch(spec.mtime)
    custom = customisation(
        tree,
        spec.extra_commands,
        spec.fake_root_commands,
        spec.enable_fakechroot,
        workdir,
        mtime,
    )
    if spec.include_store_paths:
        add_references(graph, custom, helpers)
    slots = check_budget(spec, len(base.layers) if base else 0, bool(graph.units))
    sizes = {name: unit.size for name, unit in graph.units.items()}
    layering: Layering = choose_layers(graph.refs(), sizes, slots, spec.min_layer_size)
    owner = layer_writer.Owner(spec.uid, spec.gid, spec.uname, spec.gname)
    groups = [[graph.units[name]] for name in layering.own]
    comments = [f"vmbuild: {name}" for name in layering.own]
    if layering.shared:
        groups.append([graph.units[n] for n in layering.shared])
        comments.append(f"vmbuild: {len(layering.shared)} smaller or less popular units")
    given: dict[int, LazyLayer] = {}  # the sources': from a remote cache, or packed for one
    for content in found:
        given.update(content.layers(groups, mtime, owner))
    layers = [
        given.get(i) or TreeLayer(tree_of(g), mtime, owner, weight=sum(u.size for u in g))
        for i, g in enumerate(groups)
    ]
    if custom.tar is not None:
        layers.append(FileLayer(custom.tar))
    else:
        assert custom.tree is not None
        layers.append(TreeLayer(custom.tree, mtime, custom.owner))
    comments.append("vmbuild: customisation layer")
    log.debug(
        "layers: %d base, %d units, customisation",
        len(base.layers) if base else 0,
        layering.layer_count,
    )
    return Assembled(base, layers, comments, graph, custom, found)


def _finisher(spec: LayeredSpec, asm: Assembled) -> Any:
    def finish(layers: list[Layer], kept: list[int]) -> Image:
        config = image_config(
            architecture=spec.architecture,
            created=spec.created,
            config=spec.config,
            base=asm.base,
            layers=layers,
            new_history=[asm.comments[i] for i in kept],
            env_in_place=True,
        )
        return Image(spec.name, spec.tag or default_tag(spec.name, config), config, layers)

    return finish


def stream(spec: LayeredSpec, sink: BinaryIO) -> None:
    """Write the image as an uncompressed docker-archive to ``sink`` (e.g. stdout)."""
    widen_pipe(sink)
    with tempdirs.workdir("vmbuild-") as wd:
        asm = assemble(spec, Path(wd))
        base = asm.base.layers if asm.base else []
        write_streaming(base, asm.layers, _finisher(spec, asm), sink, created_epoch(spec.created))


def _spooled(asm: Assembled, workdir: Path, opts: OutputOptions) -> tuple[list[Layer], list[int]]:
    """Every layer compressed to a file in one pass, hashed as it is packed (for OCI
    outputs, which name blobs by digest), leaving out new layers identical to earlier
    ones as :func:`write_streaming` does."""
    layers = list(asm.base.layers) if asm.base else []
    seen = {layer.diff_id for layer in layers}
    kept: list[int] = []
    for i, lazy in enumerate(asm.layers):
        path = workdir / f"layer-{i}"
        with open(path, "wb") as f, compressor(f, opts.compression, opts.level) as z:
            with BlockWriter(z, COMPRESS_CHUNK) as out:
                digest = out.begin_hash()
                lazy.write(out)
                out.end_hash()
            diff_id = out.result(digest)
        lazy.remember(diff_id)
        if diff_id in seen:
            path.unlink()
            continue
        seen.add(diff_id)
        layers.append(Layer(diff_id, BlobRef.whole(path), opts.compression))
        kept.append(i)
    return layers, kept


def _note(record: Record, spec: LayeredSpec, asm: Assembled, image: Image) -> None:
    """What went in, for the SBOM: the base (and its packages), every unit of the graph
    with its references, and the customisation layer's files no unit accounts for."""
    from vmbuild.sbom import collect
    from vmbuild.sbom.inventory import files_of

    if asm.base is not None:
        assert spec.from_image is not None
        record.add_base(base_ref(spec.from_image, asm.base), asm.base)
    units = [c for content in asm.found for c in content.note(record)]
    packaged = {u.ref for u in units}
    if asm.graph is not None:
        for name, unit in sorted(asm.graph.units.items()):
            if name not in packaged:
                units.append(collect.host_unit(name, unit.entries, unit.refs))
    record.add(*units)
    custom = asm.custom
    if custom is not None and custom.tar is not None:
        files = collect.tar_files(custom.tar, "the customisation layer")
    else:
        files = files_of(custom.tree.entries if custom and custom.tree else {})
    record.add(collect.unattributed("layer:customisation", files, units, "customisation layer"))
    diff_id = image.layers[-1].diff_id
    record.depend(
        "contents",
        diff_id,
        None,
        paths=[str(getattr(i, "name", None) or getattr(i, "path", i)) for i in spec.contents],
    )


def build(spec: LayeredSpec, out: Path, opts: OutputOptions) -> BuildResult:
    """Write the image to ``out``: a compressed docker-archive unless ``opts`` says OCI."""
    with tempdirs.workdir("vmbuild-") as wd, recording(opts, spec.function, spec.build_args) as rec:
        workdir = Path(wd)
        asm = assemble(spec, workdir, remote=rec is None)
        mtime = created_epoch(spec.created)
        if opts.format == "docker-archive":
            base = asm.base.layers if asm.base else []
            with atomic_file(out) as f, compressor(f, opts.compression, opts.level) as z:
                finish = _finisher(spec, asm)
                image, _ = write_streaming(base, asm.layers, finish, z, mtime, COMPRESS_CHUNK)
                if rec is not None:  # before the archive is in place: none without the other
                    _note(rec, spec, asm, image)
                    rec.prepare(image)
        else:
            image = _finisher(spec, asm)(*_spooled(asm, workdir, opts))
            if rec is not None:
                _note(rec, spec, asm, image)
            write_image(image, out, opts, mtime, rec.referrers(image) if rec else [])
        if rec is not None:
            rec.write(image, out)
        log.info("built %s (%d layers)", image.ref, len(image.layers))
        return result_for(image, out, opts, spec.build_args or {})
