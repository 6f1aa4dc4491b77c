"""buildImage: one new layer on top of an optional base image.

copyToRoot (paths and helpers) is gathered into a tree; extraCommands, if any, runs in a
copy of it on the host; runAsRoot, if any, runs in the build VM; the result is packed by
the deterministic layer writer and written with the base's layers kept byte for byte.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vmbuild import progress, tempdirs
from vmbuild.builders.basepull import base_path, base_ref
from vmbuild.builders.imageconfig import default_tag, image_config
from vmbuild.builders.result import BuildResult, recording, result_for
from vmbuild.config.build_image import BuildImageSpec, CopyItem
from vmbuild.config.common import created_epoch
from vmbuild.oci.compress import Compression
from vmbuild.oci.image import BlobRef, Image, Layer
from vmbuild.oci.output import OutputOptions, write_image
from vmbuild.oci.reader import BaseImage, read_image
from vmbuild.oci.tree import Tree, from_roots
from vmbuild.sources import Content, Item, contents
from vmbuild.units.helpers import Helper, add_helper

if TYPE_CHECKING:
    from vmbuild.oci.layer import Owner
    from vmbuild.sbom.attest import Record

log = logging.getLogger("vmbuild")

# Every file in the new layer has this mtime, as in nixpkgs: `created` is the config's
# date only, so a new `created` ("now") gives the same layer.
LAYER_MTIME = 1
WRITING = "writing the image"
# the stages of vm.steps that are the build VM's time (for the summary)
VM_STAGES = ("booting the build VM", "running runAsRoot", "merging the layers in the build VM")


def layer_compression(opts: OutputOptions) -> Compression:
    """New layers are plain inside a docker-archive (the archive is compressed whole)."""
    return "none" if opts.format == "docker-archive" else opts.compression


def gather(spec: BuildImageSpec, workdir: Path, found: list[Content]) -> Tree:
    """copyToRoot as one tree; the content sources' in ``found``."""
    tree = Tree()
    found += contents(spec.copy_to_root, spec.tables, spec.architecture, workdir)
    for content in found:
        content.add_to_tree(tree)
    for item in spec.copy_to_root:
        if isinstance(item, Item):
            continue
        if isinstance(item, Helper):
            add_helper(tree, item, workdir)
        else:
            tree.add_root(item, keep_dirlinks=spec.keep_contents_dirlinks)
    return tree


def pack_tree(
    tree: Tree, workdir: Path, compression: Compression, mtime: int, owner: Owner
) -> Layer:
    from vmbuild.oci import layer as layer_writer

    path = workdir / f"layer-{len(list(workdir.glob('layer-*')))}"
    with open(path, "wb") as f:
        packed = layer_writer.pack(tree, f, compression=compression, mtime=mtime, owner=owner)
    return Layer(packed.diff_id, BlobRef.whole(path), compression, packed.digest)


def assemble(
    spec: BuildImageSpec,
    workdir: Path,
    opts: OutputOptions,
    record: Record | None = None,
) -> Image:
    """The image ``spec`` describes."""
    base = (
        read_image(base_path(spec.from_image), workdir, spec.from_image_name, spec.from_image_tag)
        if spec.from_image
        else None
    )
    found: list[Content] = []
    tree = gather(spec, workdir, found)
    mtime = LAYER_MTIME
    from vmbuild.oci.layer import Owner

    owner = Owner(spec.uid, spec.gid)
    script = spec.run_as_root
    guests = [g for g in (c.guest() for c in found) if g is not None]
    configure = "".join(g.script for g in guests)  # before runAsRoot, in the same VM boot
    if script is not None or configure:
        from vmbuild.vm.steps import RootStep, run_as_root

        step = RootStep(
            name="runAsRoot",
            disk_size=spec.disk_size,
            memory=spec.build_vm_memory_size,
            script=script or "",
            extra_commands=spec.extra_commands,
            uid=spec.uid,
            gid=spec.gid,
            configure=configure,
            debs=tuple(f for g in guests for f in g.files),
        )
        new_layer = run_as_root(step, base, tree, workdir, layer_compression(opts), mtime)
    else:
        if spec.extra_commands:
            from vmbuild.hoststeps.stage import materialize, run_script

            root = workdir / "root"
            materialize(tree, root)
            run_script(spec.extra_commands, root, "extraCommands")
            tree = from_roots([root], keep_dirlinks=True)
        new_layer = pack_tree(tree, workdir, layer_compression(opts), mtime, owner)
    layers = [*(base.layers if base else []), new_layer]
    if record is not None:
        _note(record, spec, base, new_layer, workdir, found)
    config = image_config(
        architecture=spec.architecture,
        created=spec.created,
        config=spec.config,
        base=base,
        layers=layers,
        new_history=["vmbuild buildImage"],
    )
    tag = spec.tag or default_tag(spec.name, config)
    return Image(spec.name, tag, config, layers)


def _note(
    record: Record,
    spec: BuildImageSpec,
    base: BaseImage | None,
    layer: Layer,
    workdir: Path,
    found: list[Content],
) -> None:
    """What went in, for the SBOM: the base (and its packages), each copyToRoot item, and
    the new layer's files no item accounts for (extraCommands', runAsRoot's)."""
    from vmbuild.sbom import collect

    if base is not None:
        assert spec.from_image is not None
        record.add_base(base_ref(spec.from_image, base), base)
    items = [c for content in found for c in content.note(record)]
    for i, item in enumerate(spec.copy_to_root):
        one = Tree()
        if isinstance(item, Item):
            continue
        if isinstance(item, Helper):
            add_helper(one, item, workdir / f"sbom-helper-{i}")
            items.append(collect.tree_item(f"helper:{item.name}", item.name, one.entries, ""))
        else:
            one.add_root(item, keep_dirlinks=spec.keep_contents_dirlinks)
            items.append(collect.tree_item(f"copyToRoot:{item}", str(item), one.entries, ""))
    record.add(*items)
    if spec.run_as_root is not None or spec.extra_commands:
        files = collect.layer_files(layer, "the new layer")
        record.add(collect.unattributed("layer:new", files, items, "the new layer's other files"))
    record.depend("copyToRoot", layer.diff_id, None, paths=[_named(i) for i in spec.copy_to_root])


def _named(item: CopyItem) -> str:
    return item.name if isinstance(item, Helper | Item) else str(item)


def build(spec: BuildImageSpec, out: Path, opts: OutputOptions) -> BuildResult:
    report = progress.current()
    mtime = created_epoch(spec.created)
    with (
        tempdirs.workdir("vmbuild-") as wd,
        recording(opts, "buildImage", spec.build_args) as record,
    ):
        image = assemble(spec, Path(wd), opts, record)
        refs = record.referrers(image) if record else []
        if record:
            record.prepare(image)
        with report.stage(WRITING) if report.active else contextlib.nullcontext():
            write_image(image, out, opts, mtime, refs)
        if record:
            record.write(image, out)
        report.summary(f"built {image.ref}", VM_STAGES)  # a VM step ran, or --timings
        log.info("built %s (%d layers)", image.ref, len(image.layers))
        return result_for(image, out, opts, spec.build_args or {})
