"""Debian packages from a signed test repository on 127.0.0.1, through the CLI:
resolution (alternatives, versions, Provides, Multi-Arch, Pre-Depends, conflicts), the
lock file, the layers (merged-/usr, dpkg database) and every bad input's one line."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aptrepo import (
    SUITE,
    Keys,
    Pkg,
    build_deb,
    crafted_deb,
    hostile_deb,
    member,
    serve,
    write_repo,
)
from tests.support.cli import vmbuild_cli, write_spec

LIB = "usr/lib/x86_64-linux-gnu"
PACKAGES = [
    Pkg("libfoo", "1.0", files={f"{LIB}/libfoo.so.1": b"old\n"}),
    Pkg("libfoo", "2.0", fields={"Multi-Arch": "same"}, files={f"{LIB}/libfoo.so.1": b"new\n"}),
    Pkg(
        "app",
        fields={"Depends": "libfoo (>= 2.0), missing-thing | helper-b, mta"},
        files={"bin/app": b"#!/bin/sh\necho app\n"},
        symlinks={"usr/bin/app-link": "app"},
    ),
    Pkg("helper-b", arch="all", files={"usr/share/helper-b/README": b"b\n"}),
    Pkg("fake-mta", fields={"Provides": "mta"}, files={"usr/sbin/fake-mta": b"mta\n"}),
    Pkg("perlish", arch="all", fields={"Multi-Arch": "allowed"}),
    Pkg("tool", fields={"Depends": "perlish:any", "Pre-Depends": "libfoo"}),
    Pkg("c1", fields={"Conflicts": "c2"}),
    Pkg("c2"),
    Pkg("both", fields={"Depends": "c1, c2"}),
    Pkg("broken", fields={"Depends": "app, nowhere (>= 1)"}),
]

_HELLO = member("./usr/share/hello/hello")
# .debs whose data is legal for dpkg but unsafe in a layer (name -> members)
SHAPES = {
    "newline": [member("./usr/share/a\n/etc/shadow")],
    "belowabs": [member("./usr/lnk", link="/etc"), member("./usr/lnk/evil")],
    "belowrel": [member("./usr/lnk", link="../etc"), member("./usr/lnk/evil")],
    "binlink": [member("./bin", link="/etc"), member("./usr/share/x")],
    "chr00": [member("./usr/share/wh", kind=tarfile.CHRTYPE)],
    "binalias": [member("./bin", link="usr/bin"), member("./usr/bin/tool")],  # trixie's base-files
}
# .debs indexed under their name whose control file names another package or
# architecture: name -> (members, control, scripts)
RENAMED = {
    "renamed": (
        [_HELLO],
        "Package: ../../../../../r1-evil\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n",
        {"postinst": "#!/bin/sh\necho planted\n"},
    ),
    "othername": (
        [_HELLO],
        "Package: zzz-other\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n",
        {},
    ),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(base URL, served root, keyring): ``good/`` plus tampered copies."""
    root = tmp_path_factory.mktemp("aptrepo")
    build = root / "build"
    build.mkdir()
    keys = Keys(root / "gnupg")
    debs = [build_deb(p, build) for p in PACKAGES]
    debs.append(hostile_deb("evil", "../../etc/evil", build))
    debs.append(hostile_deb("evillink", "./usr/x", build, link="../../../etc"))
    debs.extend(crafted_deb(n, m, build) for n, m in SHAPES.items())
    debs.extend(crafted_deb(n, m, build, control=c, scripts=s) for n, (m, c, s) in RENAMED.items())
    index_as = {f"{n}_1.0_amd64.deb": n for n in RENAMED}
    write_repo(root / "www" / "good", debs, keys, index_as)
    for bad in ("badsig", "badindex", "baddeb"):
        shutil.copytree(root / "www" / "good", root / "www" / bad)
    inrelease = root / "www" / "badsig" / "dists" / SUITE / "InRelease"
    inrelease.write_bytes(
        inrelease.read_bytes().replace(b"Origin: vmbuild-test", b"Origin: tampered")
    )
    index = root / "www" / "badindex" / "dists" / SUITE / "main" / "binary-amd64"
    (index / "Packages.gz").write_bytes((index / "Packages.gz").read_bytes() + b"\0")
    (index / "Packages").write_bytes((index / "Packages").read_bytes() + b"\n")
    pooled = root / "www" / "baddeb" / "pool" / "main" / "helper-b_1.0_all.deb"
    pooled.write_bytes(pooled.read_bytes()[:-1] + b"X")
    with serve(root / "www") as url:
        yield url, root, keys.keyring


def _spec(
    tmp: Path, url: str, keyring: Path, contents: str, where: str = "good", **extra: str
) -> Path:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return write_spec(
        tmp,
        f'function = "buildLayeredImage"\nname = "t"\ncontents = [{contents}]\n'
        f'[debian]\nmirror = "{url}/{where}"\nsuite = "{SUITE}"\nkeyring = "{keyring}"\n{lines}',
    )


def _env(tmp: Path) -> dict[str, str]:
    return {"VMBUILD_CACHE_DIR": str(tmp / "cache")}


def _lock(tmp: Path, spec: Path) -> dict[str, dict[str, object]]:
    proc = vmbuild_cli("lock", spec, env=_env(tmp))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(spec.with_name(spec.name + ".lock").read_text())
    return {p["name"]: p for p in data["packages"]}


def _fails(tmp: Path, spec: Path, *words: str, command: str = "lock") -> str:
    args: list[str | Path] = (
        ["lock", spec] if command == "lock" else ["build", spec, "--out", tmp / "o.tar"]
    )
    proc = vmbuild_cli(*args, env=_env(tmp))
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("vmbuild: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in line, line
    assert not (tmp / "o.tar").exists()
    return line


def test_resolution_follows_debians_rules(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, keyring = repo
    got = _lock(tmp_path, _spec(tmp_path, url, keyring, '{ deb = "app" }, { deb = "tool" }'))
    assert got["libfoo"]["version"] == "2.0"  # >= 2.0, the newest
    assert "helper-b" in got and "missing-thing" not in got  # first satisfiable alternative
    assert "fake-mta" in got  # the virtual mta through Provides
    assert "perlish" in got  # perlish:any, Architecture: all
    assert got["tool"]["depends"] == ["libfoo", "perlish"]  # Pre-Depends counts
    assert got["app"]["depends"] == ["fake-mta", "helper-b", "libfoo"]
    assert "c1" not in got and len(got["libfoo"]["sha256"]) == 64  # type: ignore[arg-type]


def test_a_version_pin(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, keyring = repo
    got = _lock(tmp_path, _spec(tmp_path, url, keyring, '{ deb = "libfoo", version = "1.0" }'))
    assert got["libfoo"]["version"] == "1.0"


def test_layered_image_from_packages(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, '{ deb = "app" }')
    out = tmp_path / "img.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert spec.with_name("spec.toml.lock").is_file()  # made by the first build
    names: dict[str, tarfile.TarInfo] = {}
    data: dict[str, bytes] = {}
    layers = 0
    with tarfile.open(out) as outer:
        for m in outer:
            if m.name.endswith("layer.tar"):
                layers += 1
                f = outer.extractfile(m)
                assert f is not None
                with tarfile.open(fileobj=f) as inner:
                    for ti in inner:
                        names[ti.name.rstrip("/")] = ti
                        if ti.isfile():
                            src = inner.extractfile(ti)
                            assert src is not None
                            data[ti.name] = src.read()
    assert names["bin"].issym() and names["bin"].linkname == "usr/bin"
    assert data["usr/bin/app"] == b"#!/bin/sh\necho app\n"  # shipped as /bin/app
    assert names["usr/bin/app"].mode == 0o755
    assert names["usr/bin/app-link"].linkname == "app"
    assert data[f"{LIB}/libfoo.so.1"] == b"new\n"
    status = data["var/lib/dpkg/status"].decode()
    assert "Package: libfoo\nStatus: install ok installed\n" in status
    assert "Version: 2.0" in status
    assert "/bin/app\n" in data["var/lib/dpkg/info/app.list"].decode()
    assert "var/lib/dpkg/info/libfoo:amd64.list" in data  # Multi-Arch: same
    again = tmp_path / "again.tar"
    env = {"VMBUILD_CACHE_DIR": str(tmp_path / "other-cache")}
    proc = vmbuild_cli("build", spec, "--out", again, "--compress", "none", "--locked", env=env)
    assert proc.returncode == 0, proc.stderr
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("contents", "words"),
    [
        ('{ deb = "ap" }', ["no package 'ap'", "app"]),
        ('{ deb = "libfoo", version = "9.9" }', ["no version 9.9", "1.0", "2.0"]),
        ('{ deb = "broken" }', ["nowhere (>= 1)", "broken"]),
        ('{ deb = "both" }', ["c1", "c2", "conflicts with"]),
    ],
)
def test_resolution_errors(
    repo: tuple[str, Path, Path], tmp_path: Path, contents: str, words: list[str]
) -> None:
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, contents)
    line = _fails(tmp_path, spec, *words)
    assert "did you mean app" in line or "ap'" not in line
    assert not spec.with_name("spec.toml.lock").exists()


@pytest.mark.parametrize(
    ("where", "contents", "words"),
    [
        ("badsig", '{ deb = "app" }', ["signature does not verify"]),
        ("badindex", '{ deb = "app" }', ["does not match the hash InRelease gives"]),
        ("nowhere", '{ deb = "app" }', ["/nowhere/dists/testing/InRelease", "404"]),
    ],
)
def test_trust_chain_errors(
    repo: tuple[str, Path, Path], tmp_path: Path, where: str, contents: str, words: list[str]
) -> None:
    url, _, keyring = repo
    _fails(tmp_path, _spec(tmp_path, url, keyring, contents, where), *words)
    assert not list((tmp_path / "cache").rglob("*.json"))  # no index of it cached


def test_an_unknown_key(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, _ = repo
    other = Keys(tmp_path / "other-gnupg", "someone else <x@invalid>")
    _fails(tmp_path, _spec(tmp_path, url, other.keyring, '{ deb = "app" }'), "signature")


def test_a_deb_whose_hash_does_not_match(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, '{ deb = "helper-b" }', "baddeb")
    _fails(tmp_path, spec, "helper-b_1.0_all.deb", "SHA256", command="build")
    assert not list((tmp_path / "cache" / "debs").glob("*.deb*"))  # nothing of it kept


@pytest.mark.parametrize("name", ["evil", "evillink"])
def test_unsafe_member_names(repo: tuple[str, Path, Path], tmp_path: Path, name: str) -> None:
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, f'{{ deb = "{name}" }}')
    line = _fails(tmp_path, spec, name, command="build")
    assert "unsafe member name" in line or "points outside the image" in line
    assert not list((tmp_path / "cache" / "debs" / "unpacked").glob("[0-9a-f]*"))


def test_lock_file_errors(repo: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, '{ deb = "helper-b" }')
    lock = spec.with_name("spec.toml.lock")
    lock.write_text("{ not json")
    _fails(tmp_path, spec, "is malformed", command="build")
    lock.unlink()
    _lock(tmp_path, spec)
    spec.write_text(spec.read_text().replace('"helper-b"', '"helper-b" }, { deb = "c2"'))
    proc = vmbuild_cli("build", spec, "--out", tmp_path / "o.tar", "--locked", env=_env(tmp_path))
    assert proc.returncode != 0 and "does not cover" in proc.stderr
    assert not (tmp_path / "o.tar").exists()


@pytest.mark.parametrize(
    ("name", "says"),
    [("renamed", "'../../../../../r1-evil'"), ("othername", "'zzz-other'")],
)
def test_a_deb_whose_control_file_names_another_package(
    repo: tuple[str, Path, Path], tmp_path: Path, name: str, says: str
) -> None:
    """The name in the signed index is the package's name: a .deb whose own control file
    says another (which became info/../../… paths, the status file's name and words of
    the configure script) is refused, naming the package and the mirror."""
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, f'{{ deb = "{name}" }}')
    out = tmp_path / "img.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", env=_env(tmp_path))
    assert proc.returncode != 0, f"built, the image holding {_dpkg_names(out)}"
    line = _fails(tmp_path, spec, name, says, f"{url}/good", "Package", command="build")
    assert "index" in line
    assert not list((tmp_path / "cache" / "debs" / "unpacked").glob("[0-9a-f]*"))


def _dpkg_names(image: Path) -> list[str]:
    """The names under var/lib/dpkg in the layers of ``image`` (a docker-archive)."""
    names = []
    with tarfile.open(image) as outer:
        for m in outer:
            f = outer.extractfile(m) if m.name.endswith("layer.tar") else None
            if f is not None:
                with tarfile.open(fileobj=f) as inner:
                    names += [n for n in inner.getnames() if n.startswith("var/lib/dpkg/")]
    return names


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("newline", ("control character", "usr/share/a\\n/etc/shadow")),
        ("belowabs", ("usr/lnk/evil", "below its symlink usr/lnk")),
        ("belowrel", ("usr/lnk/evil", "below its symlink usr/lnk")),
        ("binlink", ("bin -> /etc", "merged-/usr")),
        ("chr00", ("usr/share/wh", "0:0", "whiteout")),
    ],
)
def test_package_data_unsafe_in_a_layer(
    repo: tuple[str, Path, Path], tmp_path: Path, name: str, words: tuple[str, ...]
) -> None:
    """Data dpkg would take but a layer must not hold: a name with a newline (a line of
    dpkg's .list), a member below the package's own symlink, a symlink in place of
    merged-/usr's usr/bin, a 0:0 character device (overlayfs's whiteout)."""
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, f'{{ deb = "{name}" }}')
    _fails(tmp_path, spec, name, *words, command="build")
    assert not list((tmp_path / "cache" / "debs" / "unpacked").glob("[0-9a-f]*"))


def test_the_merged_usr_alias_a_package_ships_is_the_layers_own(
    repo: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """``bin -> usr/bin`` in a package's data (trixie's base-files ships it) is the link
    the layer makes anyway: not a symlink over usr/bin."""
    url, _, keyring = repo
    spec = _spec(tmp_path, url, keyring, '{ deb = "binalias" }')
    out = tmp_path / "img.tar"
    proc = vmbuild_cli("build", spec, "--out", out, "--compress", "none", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(out) as outer:
        for m in outer:
            if m.name.endswith("layer.tar"):
                f = outer.extractfile(m)
                assert f is not None
                with tarfile.open(fileobj=f) as inner:
                    names.update((ti.name.rstrip("/"), ti) for ti in inner)
    assert names["bin"].issym() and names["bin"].linkname == "usr/bin"
    assert names["usr/bin"].isdir() and names["usr/bin/tool"].isfile()


def test_a_renamed_package_with_host_extra_commands_is_one_line(
    repo: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """buildImage's extraCommands stage the tree on the host: N2's names made a
    FileExistsError traceback on root/var/lib/dpkg/info/.. (s1-d21b-extracmd)."""
    url, _, keyring = repo
    spec = write_spec(
        tmp_path,
        'function = "buildImage"\nname = "t"\ncopyToRoot = [{ deb = "renamed" }]\n'
        'extraCommands = "touch made-here"\n'
        f'[debian]\nmirror = "{url}/good"\nsuite = "{SUITE}"\nkeyring = "{keyring}"\n',
    )
    _fails(tmp_path, spec, "renamed", "'../../../../../r1-evil'", command="build")
