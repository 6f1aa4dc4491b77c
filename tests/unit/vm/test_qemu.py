"""The build VM's QEMU command line (pure)."""

from __future__ import annotations

from pathlib import Path

from vmbuild.vm.qemu import Disk, VmSpec, argv, opt


def spec(**kw: object) -> VmSpec:
    base: dict[str, object] = dict(
        kernel=Path("/k/vmlinux"),
        initrd=Path("/i/initramfs.cpio"),
        memory_mib=384,
        accel="tcg",
        qmp_fd=7,
        console_fd=9,
        scratch=Path("/t/scratch.img"),
    )
    base.update(kw)
    return VmSpec(**base)  # type: ignore[arg-type]


def after(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_memory_kernel_initrd_and_no_defaults() -> None:
    args = argv("/usr/bin/qemu-system-x86_64", spec())
    assert args[0] == "/usr/bin/qemu-system-x86_64"
    assert after(args, "-m") == ["384M"]
    assert after(args, "-kernel") == ["/k/vmlinux"]
    assert after(args, "-initrd") == ["/i/initramfs.cpio"]
    assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(args)
    append = after(args, "-append")[0]
    assert "console=ttyS0" in append and "panic=-1" in append and "rdinit=/init" in append


def test_microvm_by_default_with_a_clock_and_no_acpi() -> None:
    machine = after(argv("q", spec()), "-M")[0]
    assert machine.startswith("microvm,") and "rtc=on" in machine and "acpi=off" in machine


def test_tcg_is_multithreaded_and_kvm_never_uses_cpu_host() -> None:
    tcg = argv("q", spec(accel="tcg"))
    assert after(tcg, "-accel") == ["tcg,thread=multi"]
    kvm = argv("q", spec(accel="kvm"))
    assert after(kvm, "-accel") == ["kvm"]
    assert "host" not in after(kvm, "-cpu")


def test_qmp_and_console_use_inherited_descriptors() -> None:
    chardevs = after(argv("q", spec()), "-chardev")
    assert "socket,id=con,fd=9" in chardevs and "socket,id=qmp,fd=7" in chardevs
    assert after(argv("q", spec()), "-mon") == ["chardev=qmp,mode=control"]


def test_disks_in_order_scratch_first_and_read_only_honoured() -> None:
    disks = [Disk(Path("/d/base.tar"), readonly=True), Disk(Path("/d/out.img"))]
    args = argv("q", spec(disks=disks))
    blockdevs = after(args, "-blockdev")
    files = [b for b in blockdevs if b.startswith("driver=file")]
    assert [f.split("filename=")[1].split(",")[0] for f in files] == [
        "/t/scratch.img",
        "/d/base.tar",
        "/d/out.img",
    ]
    assert ["read-only=on" in f for f in files] == [False, True, False]
    devices = [d for d in after(args, "-device") if d.startswith("virtio-blk")]
    assert [d.split("drive=")[1].split(",")[0] for d in devices] == ["d0", "d1", "d2"]


def test_a_host_io_error_reaches_the_guest_instead_of_pausing_it() -> None:
    """QEMU's default stops the VM on ENOSPC; vmbuild would then wait for ever."""
    args = argv("q", spec(disks=[Disk(Path("/d/base.tar"), readonly=True), Disk(Path("/o"))]))
    devices = [d for d in after(args, "-device") if d.startswith("virtio-blk")]
    assert len(devices) == 3
    assert all("werror=report" in d and "rerror=report" in d for d in devices)


def test_pc_machine_uses_virtio_pci() -> None:
    args = argv("q", spec(machine="pc"))
    assert after(args, "-M") == ["pc"]
    assert any(d.startswith("virtio-blk-pci") for d in after(args, "-device"))
    assert any(d.startswith("virtio-net-pci") for d in after(args, "-device"))


def test_ssh_is_forwarded_from_an_ephemeral_loopback_port() -> None:
    netdev = after(argv("q", spec()), "-netdev")[0]
    assert "hostfwd=tcp:127.0.0.1:0-:22" in netdev and "restrict=on" in netdev


def test_option_values_with_commas_are_quoted() -> None:
    assert opt("/a,b/c") == "/a,,b/c"
    args = argv("q", spec(scratch=Path("/t,x/s.img")))
    assert any("filename=/t,,x/s.img," in b for b in after(args, "-blockdev"))
