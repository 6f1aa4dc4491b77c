"""The fallback guest kernel: Debian's cloud kernel (``linux-image-cloud-amd64``).

Used when the host cannot build vmbuild's own kernel (or with VMBUILD_GUEST_KERNEL=cloud).
The package is fetched with ``apt-get download`` (no root) and unpacked with
``dpkg-deb``; its virtio, overlayfs and friends are modules, so the ones the guest needs
(with their dependencies, read from each module's ``.modinfo``) go into an extra cpio
that is appended to the guest's initramfs, with ``/etc/vmbuild-modules`` giving the
order in which init loads them. It boots on ``-M pc`` (virtio-pci). Cached by the
package's name and version; made under the entry's lock (concurrent first uses wait).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from elftools.elf.elffile import ELFFile

from vmbuild import cache, tempdirs
from vmbuild.errors import ToolMissing, VmbuildError
from vmbuild.run import run, which
from vmbuild.vm import cpio
from vmbuild.vm.kernel import Kernel, missing_build_tools

META = "linux-image-cloud-amd64"
KIND = "cloud-kernel"
APT_CACHE = Path("/var/lib/apt/lists")  # changes with every apt-get update
WANTED = ("virtio_pci", "virtio_blk", "virtio_net", "overlay", "virtio_rng", "virtio_console")


def _package() -> tuple[str, str]:
    """The versioned kernel package the metapackage points at, and its version.

    Asking apt costs about a second, so the answer is remembered until apt's package
    cache changes (an ``apt-get update``).
    """
    try:
        st = APT_CACHE.stat()
        memo = cache.entry(KIND, "resolved-" + cache.key([str(cache.file_identity(st))]))
    except OSError:
        return _ask_apt()
    if (memo / "package").exists():
        name, version = (memo / "package").read_text().split()
        return name, version
    name, version = _ask_apt()
    with cache.publish(KIND, memo.name) as tmp:
        (tmp / "package").write_text(f"{name} {version}\n")
    return name, version


def _ask_apt() -> tuple[str, str]:
    apt_cache = which("apt-cache", "apt")
    out = run([apt_cache, "depends", META], capture=True, check=False).stdout.decode()
    names = [
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.strip().startswith("Depends: linux-image-")
    ]
    if not names:
        lacking = missing_build_tools()
        raise ToolMissing(
            "no guest kernel: vmbuild cannot build one (missing "
            + ", ".join(lacking)
            + f") and apt knows no {META}",
            "install the build tools: apt-get install " + " ".join(lacking),
        )
    show = run([apt_cache, "show", "--no-all-versions", names[0]], capture=True).stdout
    version = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in show.decode().splitlines()
            if ln.startswith("Version:")
        ),
        "unknown",
    )
    return names[0], version


def module_info(path: Path) -> dict[str, str]:
    """The ``key=value`` pairs of a kernel module's .modinfo section."""
    with path.open("rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        data = section.data() if section is not None else b""
    pairs = (item.partition(b"=") for item in data.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


def load_order(modules_dir: Path, wanted: tuple[str, ...] = WANTED) -> list[Path]:
    """The modules ``wanted`` needs, dependencies first; built-in ones are skipped."""
    by_name = {p.name.removesuffix(".ko").replace("-", "_"): p for p in modules_dir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name not in by_name:  # not a module: built in (or absent)
            return
        seen.add(name)
        for dep in filter(None, module_info(by_name[name]).get("depends", "").split(",")):
            visit(dep)
        order.append(by_name[name])

    for name in wanted:
        visit(name)
    return order


def _fetch(into: Path) -> None:
    name, _ = _package()
    with tempdirs.workdir("vmbuild-cloudkernel-") as work:
        run(
            [which("apt-get", "apt"), "download", name],
            cwd=work,
            capture=True,
            what="apt-get download",
        )
        deb = next(work.glob("*.deb"))
        run([which("dpkg-deb", "dpkg"), "-x", deb, work / "x"], capture=True, what="dpkg-deb")
        vmlinuz = next((work / "x/boot").glob("vmlinuz-*"))
        shutil.copyfile(vmlinuz, into / "vmlinuz")
        modules = load_order(next((work / "x/lib/modules").iterdir()))
        entries = [cpio.Entry.dir("usr/lib/vmbuild-modules")]
        for m in modules:
            entries.append(cpio.Entry.file(f"usr/lib/vmbuild-modules/{m.name}", m.read_bytes()))
        listing = "".join(f"/usr/lib/vmbuild-modules/{m.name}\n" for m in modules)
        entries.append(cpio.Entry.file("etc/vmbuild-modules", listing.encode()))
        buf = io.BytesIO()
        cpio.write(buf, entries)
        (into / "modules.cpio").write_bytes(buf.getvalue())


def ensure() -> Kernel:
    """Debian's cloud kernel, fetched and cached on first use."""
    name, version = _package()
    digest = cache.key(["cloud-kernel v1", name, version])
    where = cache.entry(KIND, digest)
    if not (where / "modules.cpio").exists():
        with cache.lock(KIND, digest, f"vmbuild: waiting for another vmbuild fetching {name}"):
            if not (where / "modules.cpio").exists():
                with cache.publish(KIND, digest) as tmp:
                    _fetch(tmp)
    if not (where / "vmlinuz").exists():
        raise VmbuildError(f"the cached {name} is incomplete", f"remove {where} and retry")
    return Kernel(where / "vmlinuz", "cloud", modules=where / "modules.cpio", machine="pc")


def with_modules(base_initrd: Path, modules: Path) -> Path:
    """``base_initrd`` with the ``modules`` cpio appended (cached; the kernel reads both)."""
    digest = cache.key(["cloud-initrd v1", str(base_initrd), str(modules)])
    combined = cache.entry("cloud-initrd", digest) / "initrd.cpio"
    if not combined.exists():
        with (
            cache.publish("cloud-initrd", digest) as tmp,
            (tmp / "initrd.cpio").open("wb") as out,
        ):
            out.write(base_initrd.read_bytes())
            out.write(modules.read_bytes())
    return combined
