"""debian/remotelayers: a package set's entries survive the trip through a
``debcontent`` entry (hosts moved to the reading runner's cache and work dirs), a bad
one is a miss, and the keys follow what the layer's bytes depend on."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.imports import loaded_of
from vmbuild.debian import remotelayers
from vmbuild.debian.build import DebContent, Pinned
from vmbuild.debian.lock import For, Lock, Locked
from vmbuild.oci.tree import BlobSource
from vmbuild.remotecache.artifact import BadEntry


def _pinned(sha: str = "a" * 64, configure: bool = False) -> Pinned:
    pkg = Locked("app", "1.0", "amd64", "pool/app.deb", 10, sha)
    lock = Lock(For("testing", "amd64", ()), packages=(pkg,))
    settings = SimpleNamespace(architecture="amd64")  # all a key needs of Settings
    return Pinned(settings, lock, configure)  # type: ignore[arg-type]


def test_content_round_trip_moves_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "a-cache"))
    payload = tmp_path / "a-cache" / "debs" / "unpacked" / ("a" * 64) / "payload"
    status = tmp_path / "a-work" / "status"
    pinned = _pinned()
    debs = DebContent(pinned.lock, architecture="amd64", order=["app"])
    debs.packages["app"] = {
        "usr/bin/app": BlobSource(payload, stat.S_IFREG | 0o755, size=5, offset=512),
        "usr/bin/x": BlobSource(payload, stat.S_IFREG | 0o755, size=5, link_group="g:1"),
    }
    debs.links = {"bin": BlobSource(payload, stat.S_IFLNK | 0o777, linkname="usr/bin")}
    debs.status = {"var/lib/dpkg/status": BlobSource(status, stat.S_IFREG | 0o644, size=9)}
    data = remotelayers._dump(debs, tmp_path / "a-work")
    monkeypatch.setenv("VMBUILD_CACHE_DIR", str(tmp_path / "b-cache"))
    got = remotelayers._load(data, pinned, tmp_path / "b-work")
    app = got.packages["app"]["usr/bin/app"]
    assert app.host == tmp_path / "b-cache" / "debs" / "unpacked" / ("a" * 64) / "payload"
    assert (app.mode, app.size, app.offset) == (stat.S_IFREG | 0o755, 5, 512)
    assert got.packages["app"]["usr/bin/x"].link_group == "g:1"
    assert got.links["bin"].linkname == "usr/bin"
    assert got.status["var/lib/dpkg/status"].host == tmp_path / "b-work" / "status"
    assert got.order == ["app"] and list(got.packages["app"]) == list(debs.packages["app"])


@pytest.mark.parametrize(
    "data",
    [
        {},
        {
            "packages": {"other": []},
            "architecture": "amd64",
            "links": [],
            "status": [],
            "order": [],
        },
        {"packages": {"app": [["x", ["z", "y"], 1, 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["x", ["c", "y"], "mode", 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["x"]]}, "architecture": "amd64", "links": [], "status": []},
        {"packages": {"app": [["x", ["c", "y"], 1, 0, 0, 0, 0, 7, 0, "", False]]}},
        # a host file outside this runner's cache and work dirs; an unsafe layer name
        {"packages": {"app": [["x", ["a", "etc/shadow"], 1, 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["x", ["c", "../../etc/x"], 1, 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["x", ["c", "/etc/shadow"], 1, 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["../x", ["c", "y"], 1, 0, 0, 0, 0, "", 0, "", False]]}},
        {"packages": {"app": [["x", ["c", "y"], 0o120777, 0, 0, 0, 0, "../..", 0, "", False]]}},
        [],
    ],
)
def test_a_bad_content_entry_is_a_miss(tmp_path: Path, data: object) -> None:
    with pytest.raises(BadEntry):
        remotelayers._load(data, _pinned(), tmp_path)


def test_the_content_key_follows_the_packages_and_the_status_mode() -> None:
    one = remotelayers.content_key(_pinned())
    assert one == remotelayers.content_key(_pinned())
    assert one != remotelayers.content_key(_pinned("b" * 64))
    assert one != remotelayers.content_key(_pinned(configure=True))


def test_the_layered_builder_loads_no_registry_code() -> None:
    """Without remote caches (``vmbuild stream``, a build without --cache-*) the hook
    loads nothing of the registry client."""
    code = "import vmbuild.builders.layered"
    assert loaded_of(code, ("vmbuild.registry", "vmbuild.remotecache")) == []
