"""The base-image reader's checks, one function at a time: digests, layout files opened
without following links, the layer check (digest, diff_id, tar structure, names), the
bounded blob stream and the JSON shapes."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any, cast

import pytest
import zstandard

from tests.support.crafted import sha, tar_bytes
from vmbuild.errors import ImageError
from vmbuild.oci import imagejson
from vmbuild.oci.digest import check_digest, hex_of
from vmbuild.oci.image import BlobRef
from vmbuild.oci.layercheck import CheckedBlob, check_layer
from vmbuild.oci.safety import open_beneath

GOOD = "sha256:" + "ab" * 32
LAYER = tar_bytes([("etc", "d", ""), ("etc/a", "f", "a" * 3000), ("etc/l", "l", "a")])


@pytest.mark.parametrize(
    "value",
    [
        "sha256:../../../../tmp/x",
        "sha256:" + "AB" * 32,
        "sha256:" + "ab" * 31,
        GOOD + "\n",
        "sha256" + "ab" * 32,
        None,
        7,
        ["sha256:" + "ab" * 32],
    ],
)
def test_bad_digests_are_refused(value: object) -> None:
    with pytest.raises(ImageError, match=r"is not a valid digest|not a sha256 digest") as err:
        check_digest(value, "here")
    assert err.value.message.startswith("here: ") and "\n" not in err.value.message


def test_other_algorithms_are_named_as_such() -> None:
    with pytest.raises(ImageError, match="is not a sha256 digest"):
        check_digest("sha512:" + "ab" * 64, "here")


def test_good_digest_and_hex_of() -> None:
    assert check_digest(GOOD, "here") == GOOD
    assert hex_of(GOOD) == "ab" * 32
    with pytest.raises(ValueError):
        hex_of("sha256:../x")


def check(data: bytes, kind: str = "none", **kw: object) -> object:
    return check_layer(io.BytesIO(data), kind, "layer 1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_a_good_layer_hashes_and_copies(kind: str) -> None:
    blob = {
        "none": LAYER,
        "gzip": gzip.compress(LAYER),
        "zstd": zstandard.ZstdCompressor().compress(LAYER),
    }[kind]
    copy, plain = io.BytesIO(), io.BytesIO()
    got = check_layer(
        io.BytesIO(blob),
        kind,  # type: ignore[arg-type]
        "layer 1",
        digest=sha(blob),
        diff_id=sha(LAYER),
        copy=copy,
        plain=plain,
    )
    assert (got.digest, got.size, got.diff_id, got.plain_size) == (
        sha(blob),
        len(blob),
        sha(LAYER),
        len(LAYER),
    )
    assert copy.getvalue() == blob and plain.getvalue() == LAYER


def test_zstd_layers_of_several_frames() -> None:
    half = len(LAYER) // 2
    z = zstandard.ZstdCompressor()
    blob = z.compress(LAYER[:half]) + z.compress(LAYER[half:])
    assert check(blob, "zstd", diff_id=sha(LAYER))


def test_mismatches() -> None:
    with pytest.raises(ImageError, match="not its diff_id"):
        check(LAYER, diff_id=GOOD)
    with pytest.raises(ImageError, match="not its digest"):
        check(gzip.compress(LAYER), "gzip", digest=GOOD, diff_id=sha(LAYER))


@pytest.mark.parametrize(
    "data",
    [b"", b"not a tar at all" * 100, os.urandom(4096)],
    ids=["empty", "text", "random"],
)
def test_not_a_tar(data: bytes) -> None:
    with pytest.raises(ImageError, match="not a readable tar"):
        check(data)


def test_compressed_garbage() -> None:
    with pytest.raises(ImageError, match="not a readable gzip-compressed tar"):
        check(b"\x1f\x8b" + os.urandom(2000), "gzip")
    with pytest.raises(ImageError, match="not a readable zstd-compressed tar"):
        check(b"\x28\xb5\x2f\xfd" + os.urandom(2000), "zstd")
    with pytest.raises(ImageError, match="not a readable gzip-compressed tar"):
        check(gzip.compress(LAYER)[:-30], "gzip")  # truncated


def three_files() -> bytes:
    return tar_bytes([("a", "f", "1" * 600), ("b", "f", "2" * 600), ("c", "f", "3")])


def test_a_corrupt_header_part_way() -> None:
    data = bytearray(three_files())
    second = data.index(b"b\0")  # the second member's header
    assert second % 512 == 0
    data[second + 100 : second + 108] = b"garbage!"  # the mode field: checksum breaks
    with pytest.raises(ImageError, match="corrupt tar header at byte"):
        check(bytes(data))


def test_truncated_member_data() -> None:
    data = three_files()
    cut = data.index(b"1" * 600) + 300
    with pytest.raises(ImageError, match="the tar is truncated"):
        check(data[:cut])


def test_a_truncated_header() -> None:
    data = three_files()
    cut = data.index(b"2" * 600) - 200  # inside the second header block
    with pytest.raises(ImageError, match=r"the tar is truncated"):
        check(data[:cut])


def test_no_end_blocks_is_read_to_its_last_member() -> None:
    data = tar_bytes([("a", "f", "x"), ("b", "l", "a")], end=False)
    assert len(data) % 512 == 0 and data[-512:].strip(b"\0")
    assert check(data, diff_id=sha(data))


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("../escape", "f", "x"), "climbs out"),
        (("a/../../escape", "f", "x"), "climbs out"),
        (("/abs", "f", "x"), "absolute path"),
        (("up", "l", "../../etc/passwd"), "points outside"),
        (("d/up", "l", "../../x"), "points outside"),
        (("dangling", "h", "missing"), "has no target"),
        (("hl", "h", "../etc/passwd"), "climbs out"),
        (("hd", "h", "etc"), "has no target"),  # a hard link to a directory
    ],
)
def test_unsafe_names(member: tuple[str, str, str], message: str) -> None:
    data = tar_bytes([("etc", "d", ""), ("ok", "f", "fine"), member])
    with pytest.raises(ImageError, match=message):
        check(data)


def test_safe_links_pass() -> None:
    data = tar_bytes(
        [
            ("a", "f", "x"),
            ("h1", "h", "a"),
            ("h2", "h", "h1"),
            ("abs", "l", "/etc/passwd"),
            ("d/rel", "l", "../a"),
        ]
    )
    assert check(data)


def test_an_oversized_header_record() -> None:
    data = tar_bytes([("x" * (2 << 20), "f", "y")])  # a pax path record over 1 MiB
    with pytest.raises(ImageError, match="-byte 'x' record"):
        check(data)


def test_sink_errors_are_not_blamed_on_the_layer() -> None:
    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left") as err:
        check(LAYER, copy=Full())
    assert not isinstance(err.value, ImageError)


def test_checked_blob_checks_once(tmp_path: Path) -> None:
    path = tmp_path / "outer"
    path.write_bytes(b"HEAD" * 128 + LAYER + b"manifest.json follows")
    ref = BlobRef(path, 512, len(LAYER))
    blob = CheckedBlob(ref, "none", "layer 1", diff_id=sha(LAYER))
    out = io.BytesIO()
    blob.copy_to(out)
    assert out.getvalue() == LAYER and blob.checked and blob.digest == sha(LAYER)
    path.write_bytes(b"HEAD" * 128 + b"\0" * len(LAYER))  # changed after the check
    blob.copy_to(io.BytesIO())  # not read twice for the check
    bad = CheckedBlob(ref, "none", "layer 1", diff_id=sha(LAYER))
    with pytest.raises(ImageError, match="not its diff_id"):
        bad.verify()


def test_blob_reader_stops_at_the_blob_end(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789" * 10)
    with BlobRef(path, 10, 20).reader() as r:
        buf = bytearray(64)
        assert cast(Any, r).readinto(buf) == 20 and bytes(buf[:20]) == b"0123456789" * 2
        assert r.read() == b""
        r.seek(5)
        assert r.tell() == 5 and r.read(100) == b"56789" + b"0123456789"
        r.seek(-3, 2)
        assert r.read() == b"789"
    tar_path = tmp_path / "t"
    tar_path.write_bytes(b"x" * 512 + LAYER[:-1024] + tar_bytes([("leak", "f", "!")]))
    with (
        BlobRef(tar_path, 512, len(LAYER) - 1024).reader() as r,
        tarfile.open(fileobj=r, mode="r:") as tar,
    ):
        assert "leak" not in tar.getnames() and "etc/a" in tar.getnames()


def test_open_beneath(tmp_path: Path) -> None:
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "blobs" / "sha256" / "good").write_text("ok")
    secret = tmp_path / "secret"
    secret.write_text("host file")
    os.symlink(secret, root / "blobs" / "sha256" / "link")
    os.mkfifo(root / "blobs" / "sha256" / "fifo")
    (root / "blobs" / "sha256" / "dir").mkdir()
    fd = open_beneath(root, "blobs/sha256/good", "layout")
    with os.fdopen(fd, "rb") as f:
        assert f.read() == b"ok"
    for name in ("link", "fifo", "dir"):
        with pytest.raises(ImageError, match="symbolic link or not a regular file"):
            open_beneath(root, f"blobs/sha256/{name}", "layout")
    with pytest.raises(ImageError, match="lacks blobs/sha256/none"):
        open_beneath(root, "blobs/sha256/none", "layout")
    for rel in ("../secret", "blobs/../../secret", "/etc/passwd", "blobs//x"):
        with pytest.raises(ImageError, match="unsafe path"):
            open_beneath(root, rel, "layout")
    linked = tmp_path / "linked"
    (linked / "blobs").mkdir(parents=True)
    os.symlink(root / "blobs" / "sha256", linked / "blobs" / "sha256")
    with pytest.raises(ImageError, match="symbolic link or not a regular file"):
        open_beneath(linked, "blobs/sha256/good", "layout")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: imagejson.docker_manifest({}, "a"), "manifest.json is not a list"),
        (lambda: imagejson.docker_manifest([], "a"), "lists no image"),
        (lambda: imagejson.docker_manifest([1], "a"), "entry 1 is not a JSON object"),
        (lambda: imagejson.docker_manifest([{"Config": 5}], "a"), "no Config member name"),
        (lambda: imagejson.docker_manifest([{"Config": "c", "Layers": "x"}], "a"), "Layers"),
        (
            lambda: imagejson.docker_manifest([{"Config": "c", "Layers": [1]}], "a"),
            "other than strings",
        ),
        (lambda: imagejson.index_manifests([], "a", "index.json"), "not a JSON object"),
        (lambda: imagejson.index_manifests({"manifests": [3]}, "a", "x"), "not a JSON object"),
        (lambda: imagejson.index_manifests({"manifests": 3}, "a", "x"), "not a list"),
        (
            lambda: imagejson.index_manifests({"manifests": [{"digest": "x"}]}, "a", "x"),
            "not a valid digest",
        ),
        (
            lambda: imagejson.read_descriptor({"digest": GOOD, "size": "1"}, "a", "d"),
            "not a count of bytes",
        ),
        (
            lambda: imagejson.read_descriptor({"digest": GOOD, "annotations": []}, "a", "d"),
            "annotations",
        ),
        (lambda: imagejson.image_manifest({"config": {"digest": GOOD}}, "a"), "layers"),
        (lambda: imagejson.image_config([], "a"), "image config is not a JSON object"),
        (lambda: imagejson.image_config({}, "a"), "rootfs is not a JSON object"),
        (
            lambda: imagejson.image_config({"rootfs": {"diff_ids": ["abc"]}}, "a"),
            "not a valid digest",
        ),
        (
            lambda: imagejson.image_config({"rootfs": {"diff_ids": []}, "config": "x"}, "a"),
            "config's config is not a JSON object",
        ),
        (
            lambda: imagejson.image_config(
                {"rootfs": {"diff_ids": []}, "config": {"Env": [1]}}, "a"
            ),
            "Env holds something other than strings",
        ),
        (
            lambda: imagejson.image_config({"rootfs": {"diff_ids": []}, "history": [1]}, "a"),
            "history entry 1 is not a JSON object",
        ),
    ],
)
def test_json_shapes(call: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        call()  # type: ignore[operator]


def test_names_after_large_and_odd_sized_members_are_seen() -> None:
    mib = 1 << 20
    sizes = [0, 1, 511, 512, 513, mib - 1, mib, mib + 1, 2 * mib + 7, 1023, 1024]
    members: list[tuple[str, str, bytes | str]] = [
        (f"f{i}", "f", os.urandom(n)) for i, n in enumerate(sizes)
    ]
    members += [(f"s/{i}", "f", b"x" * (i % 700)) for i in range(3000)]
    good = tar_bytes(members)
    assert check(good, diff_id=sha(good))
    assert check(gzip.compress(good, 1), "gzip", diff_id=sha(good))
    bad = tar_bytes([*members, ("s/../../evil", "f", "x")])
    with pytest.raises(ImageError, match="climbs out"):
        check(bad)
    with pytest.raises(ImageError, match="climbs out"):
        check(zstandard.ZstdCompressor().compress(bad), "zstd")
