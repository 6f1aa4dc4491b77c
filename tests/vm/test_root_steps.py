"""runAsRoot and exportImage in real build VMs (QEMU under TCG where KVM is unusable)."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import vmbuild_cli
from tests.support.containers import Containers
from tests.support.images import image_from_layers, layer_tar
from tests.support.rootsteps import build, umoci_rootfs

pytestmark = [pytest.mark.vm, pytest.mark.tools]


def layers_of(archive: Path) -> list[dict[str, tarfile.TarInfo]]:
    """Each layer's members by name, bottom first."""
    out = []
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for path in manifest[0]["Layers"]:
            blob = tar.extractfile(path)
            assert blob is not None
            with tarfile.open(fileobj=blob) as layer:
                out.append({m.name.rstrip("/"): m for m in layer})
    return out


SHADOW = '''
name = "shadow-basic"
tag = "t"
runAsRoot = """
#!/bin/sh
shadowSetup
groupadd -r redis
useradd -r -g redis redis
mkdir /data
chown redis:redis /data
"""
'''


def test_manual_shadow_example_from_scratch(tmp_path: Path) -> None:
    """FROM scratch: no shell in the image, the guest's tools do the work."""
    out = build(tmp_path, SHADOW)
    (layer,) = layers_of(out)
    rootfs = umoci_rootfs(tmp_path, out)
    passwd = (rootfs / "etc" / "passwd").read_text()
    redis = next(line for line in passwd.splitlines() if line.startswith("redis:"))
    uid, gid = int(redis.split(":")[2]), int(redis.split(":")[3])
    assert uid < 1000  # a system user (-r)
    assert (layer["data"].uid, layer["data"].gid) == (uid, gid)
    assert "redis:x:" in (rootfs / "etc" / "group").read_text()
    assert not any(n.startswith((".vmbuild", "dev", "proc", "sys")) for n in layer)


def base_image(tmp_path: Path) -> Path:
    l1 = layer_tar(
        tmp_path / "b1.tar",
        [
            ("etc", "d", ""),
            ("etc/gone", "f", "delete me"),
            ("etc/keep", "f", "kept"),
            ("opt", "d", ""),
            ("opt/old", "f", "old"),
        ],
    )
    return image_from_layers(tmp_path / "base.tar", [l1, l1], name="base:1")


def test_changes_on_a_base_image(tmp_path: Path, containers: Containers) -> None:
    base = base_image(tmp_path)
    (tmp_path / "root" / "bin").mkdir(parents=True)
    cap = tmp_path / "root" / "bin" / "ping"
    cap.write_bytes(b"#!/bin/sh\n")
    os.chmod(cap, 0o755)
    # security.capability v2: cap_net_raw+ep
    value = bytes.fromhex("0000000200200000000000000000000000000000")
    os.setxattr(cap, "security.capability", value)
    spec = f'''
name = "changed"
tag = "t"
fromImage = "{base}"
copyToRoot = "root"
runAsRoot = """
rm /etc/gone
rm -rf /opt && mkdir /opt && echo new > /opt/new
mkdir -p /data && echo a > /data/a && ln /data/a /data/b
mknod /dev-null-copy c 1 3
test -x /bin/ping
"""
extraCommands = "echo extra > extra-file"
'''
    out = build(tmp_path, spec)
    layers = layers_of(out)
    assert len(layers) == 3  # the base's two (one listed twice) and ours
    new = layers[-1]
    assert "etc/.wh.gone" in new and "etc/keep" not in new
    assert "opt/.wh..wh..opq" in new and "opt/new" in new
    assert new["data/b"].islnk() and new["data/b"].linkname == "data/a"
    assert new["dev-null-copy"].ischr() and (
        new["dev-null-copy"].devmajor,
        new["dev-null-copy"].devminor,
    ) == (1, 3)
    assert (
        new["bin/ping"]
        .pax_headers["SCHILY.xattr.security.capability"]
        .encode("utf-8", "surrogateescape")
        == value
    )
    assert "extra-file" in new
    assert all(m.mtime == 1 for m in new.values())
    rootfs = umoci_rootfs(tmp_path, out)
    assert not (rootfs / "etc" / "gone").exists()
    assert (rootfs / "etc" / "keep").read_text() == "kept"
    assert sorted(p.name for p in (rootfs / "opt").iterdir()) == ["new"]
    again = build(tmp_path, spec, "again.tar")
    assert again.read_bytes() == out.read_bytes()


def test_export_in_vm_agrees_with_the_host_merge(tmp_path: Path) -> None:
    layers = []
    for i in range(130):
        members: list[tuple[str, str, bytes | str]] = [("d", "d", ""), (f"d/f{i}", "f", str(i))]
        if i:
            members.append((f"d/.wh.f{i - 1}", "w", ""))
        if i == 64:
            members += [("keep", "d", ""), ("keep/x", "f", "x"), ("keep/hl", "h", "keep/x")]
        layers.append(layer_tar(tmp_path / f"l{i}.tar", members))
    image = image_from_layers(tmp_path / "many.tar", layers)
    host = build(tmp_path, f'function = "exportImage"\nfromImage = "{image}"\n', "host.tar")
    vm = build(
        tmp_path, f'function = "exportImage"\nfromImage = "{image}"\nmergeInVM = true\n', "vm.tar"
    )
    with tarfile.open(vm) as tar:
        assert sorted(m.name.rstrip("/") for m in tar) == [
            "d",
            "d/f129",
            "keep",
            "keep/hl",
            "keep/x",
        ]
    assert vm.read_bytes() == host.read_bytes()


def test_failing_script_reports_status_and_last_lines(tmp_path: Path) -> None:
    spec = tmp_path / "fail.toml"
    spec.write_text('name = "f"\nrunAsRoot = "echo about to fail >&2\\nexit 42"\n')
    out = tmp_path / "f.tar"
    proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 4  # a failed user script; its own status is in the message
    last = proc.stderr.strip().splitlines()[-1]
    assert "runAsRoot failed with status 42: about to fail" in last
    assert not out.exists()


def test_out_of_memory_names_build_vm_memory_size(tmp_path: Path) -> None:
    spec = tmp_path / "oom.toml"
    spec.write_text(
        'name = "o"\nbuildVMMemorySize = 128\n'
        'runAsRoot = "dd if=/dev/zero of=/dev/null bs=400M count=1"\n'
    )
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "o.tar")
    assert proc.returncode != 0
    assert "buildVMMemorySize" in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_too_small_disk_is_reported_before_booting(tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "blob").write_bytes(b"\0" * (90 << 20))
    spec = tmp_path / "disk.toml"
    spec.write_text('name = "d"\ncopyToRoot = "big"\ndiskSize = 64\nrunAsRoot = "true"\n')
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "d.tar")
    assert proc.returncode == 1
    assert "diskSize is 64 MiB" in proc.stderr and "set diskSize =" in proc.stderr


def test_gzip_output_loads_in_podman(tmp_path: Path, containers: Containers) -> None:
    spec = tmp_path / "redis.toml"
    spec.write_text(
        'name = "redis"\ntag = "latest"\nrunAsRoot = "mkdir -p /data"\n'
        'config = { WorkingDir = "/data", Volumes = { "/data" = {} } }\n'
    )
    out = tmp_path / "redis.tar.gz"
    proc = vmbuild_cli("build", spec, "--out", out)
    assert proc.returncode == 0, proc.stderr
    loaded = containers.podman("load", input=gzip.decompress(out.read_bytes()))
    assert b"redis:latest" in loaded.stdout + loaded.stderr
