"""The image store (taskvpc.agent.images) with real files and real tars: OCI layouts, docker-archive tars
and rootfs directories built in the test, whiteouts, shared layers, corrupt sources, concurrency, rm."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from taskvpc.agent.images import Image, ImageConfig, ImageError, ImageNotFound, ImageStore
from tests.support.images import Layer, digest, docker_archive, layer_blob_path, oci_layout

BASE = Layer().dir("etc").file("etc/os-release", b"ID=test\n").file("bin/tool", b"#!/bin/sh\n", mode=0o755)


def store_at(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images", in_use=lambda rootfs: False)


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content, symlinks by target, directories as '/'."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "/"
        else:
            found[name] = path.read_text()
    return found


def test_oci_layout_import_resolves_under_every_spelling(tmp_path: Path) -> None:
    app = Layer().dir("srv").file("srv/index.html", b"hello").symlink("bin/sh", "/bin/tool")
    manifest_digest = oci_layout(tmp_path / "layout", [BASE, app], cmd=["httpd", "-f"])
    store = store_at(tmp_path)

    image = store.import_source("web", tmp_path / "layout")

    assert image.reference == "docker.io/library/web:latest"
    assert image.digest == manifest_digest
    assert image.layers == (BASE.diff_id, app.diff_id)
    assert image.config == ImageConfig((), ("httpd", "-f"), (("PATH", "/bin"),), "/srv", "nobody")
    assert tree(image.rootfs) == {
        "bin": "/",
        "bin/sh": "-> /bin/tool",
        "bin/tool": "#!/bin/sh\n",
        "etc": "/",
        "etc/os-release": "ID=test\n",
        "srv": "/",
        "srv/index.html": "hello",
    }
    assert stat.S_IMODE((image.rootfs / "bin" / "tool").stat().st_mode) == 0o755
    for spelling in (
        "web",
        "web:latest",
        "library/web",
        "docker.io/library/web:latest",
        f"web@{manifest_digest}",
    ):
        assert store.resolve(spelling).rootfs == image.rootfs
    with pytest.raises(ImageNotFound, match="web:other"):
        store.resolve("web:other")
    with pytest.raises(ImageNotFound):
        store.resolve("web@sha256:" + "0" * 64)


def test_whiteouts_hide_lower_files_and_opaque_directories(tmp_path: Path) -> None:
    lower = (
        Layer()
        .file("etc/a", b"a")
        .file("etc/b", b"b")
        .file("data/x", b"x")
        .file("data/sub/y", b"y")
        .file("swap", b"file below")
        .dir("dir-to-file")
        .file("dir-to-file/inner", b"i")
    )
    upper = (
        Layer()
        .whiteout("etc/a")
        .opaque("data")
        .file("data/z", b"z")
        .dir("swap")
        .file("swap/now-a-dir", b"d")
        .file("dir-to-file", b"now a file")
        .whiteout("never-existed")
    )
    oci_layout(tmp_path / "layout", [lower, upper], compress=False)

    image = store_at(tmp_path).import_source("wh:1", tmp_path / "layout")

    assert tree(image.rootfs) == {
        "data": "/",
        "data/z": "z",
        "dir-to-file": "now a file",
        "etc": "/",
        "etc/b": "b",
        "swap": "/",
        "swap/now-a-dir": "d",
    }
    # the cached layer keeps its whiteouts: another image may stack it on different layers
    cached = tmp_path / "images" / "layers" / upper.diff_id.partition(":")[2]
    assert (cached / "etc" / ".wh.a").exists() and (cached / "data" / ".wh..wh..opq").exists()


def test_a_layer_shared_by_two_images_is_unpacked_once_and_hard_linked(tmp_path: Path) -> None:
    one, two = Layer().file("one", b"1"), Layer().file("two", b"2")
    oci_layout(tmp_path / "layout", [BASE, one])
    docker_archive(tmp_path / "two.tar", [BASE, two], ["two:latest"])
    store = store_at(tmp_path)

    first = store.import_source("one", tmp_path / "layout")
    cached = tmp_path / "images" / "layers" / BASE.diff_id.partition(":")[2]
    cached_inode = cached.stat().st_ino
    second = store.import_source("two", tmp_path / "two.tar")

    assert cached.stat().st_ino == cached_inode  # not unpacked again
    assert sorted(p.name for p in (tmp_path / "images" / "layers").iterdir()) == sorted(
        layer.diff_id.partition(":")[2] for layer in (BASE, one, two)
    )
    shared = cached / "etc" / "os-release"
    assert (first.rootfs / "etc/os-release").stat().st_ino == shared.stat().st_ino
    assert (second.rootfs / "etc/os-release").stat().st_ino == shared.stat().st_ino
    assert (first.rootfs / "one").exists() and not (first.rootfs / "two").exists()
    assert (second.rootfs / "two").exists() and not (second.rootfs / "one").exists()


def test_docker_archive_picks_the_tagged_image_and_is_known_by_its_config_digest(tmp_path: Path) -> None:
    config_digest = docker_archive(tmp_path / "saved.tar", [BASE], ["registry.local:5000/team/app:2"])
    image = store_at(tmp_path).import_source("registry.local:5000/team/app:2", tmp_path / "saved.tar")
    assert image.digest == image.id == config_digest
    assert (image.rootfs / "etc" / "os-release").read_text() == "ID=test\n"


def test_the_same_image_from_two_formats_has_one_id_and_one_rootfs(tmp_path: Path) -> None:
    oci_layout(tmp_path / "layout", [BASE])
    docker_archive(tmp_path / "saved.tar", [BASE], ["x:latest"])
    store = store_at(tmp_path)
    from_layout = store.import_source("a", tmp_path / "layout")
    from_archive = store.import_source("b", tmp_path / "saved.tar")
    assert from_layout.id == from_archive.id and from_layout.rootfs == from_archive.rootfs
    assert from_layout.digest != from_archive.digest  # a manifest digest against a config digest
    assert len(list((tmp_path / "images" / "images").iterdir())) == 1


def test_rootfs_directory_import_is_reproducible(tmp_path: Path) -> None:
    source = tmp_path / "rootfs"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "busybox").write_bytes(b"\x7fELF")
    (source / "bin" / "sh").symlink_to("busybox")
    os.link(source / "bin" / "busybox", source / "bin" / "hardlinked")
    (source / "empty").mkdir()
    store = store_at(tmp_path)
    config = ImageConfig(cmd=("sh",))

    image = store.import_source("dir:1", source, config)
    again = store.import_source("dir:2", source, config)

    assert image.id == again.id and image.config.cmd == ("sh",)
    assert tree(image.rootfs) == {
        "bin": "/",
        "bin/busybox": "\x7fELF",
        "bin/hardlinked": "\x7fELF",
        "bin/sh": "-> busybox",
        "empty": "/",
    }
    assert (image.rootfs / "bin/busybox").stat().st_ino == (image.rootfs / "bin/hardlinked").stat().st_ino


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("flip a byte", r"layer 2 is (corrupt|not a readable layer tar)"),
        ("remove the blob", r"blob sha256:[0-9a-f]{64} of layer 2 is missing"),
        ("truncate", r"layer 2 is not a readable layer tar"),
    ],
)
def test_corrupt_oci_layout_is_a_clean_error_and_leaves_nothing(
    tmp_path: Path, damage: str, expected: str
) -> None:
    good = Layer().file("ok", b"fine")
    bad = Layer().file("big", os.urandom(4096))
    oci_layout(tmp_path / "layout", [good, bad])
    blob = layer_blob_path(tmp_path / "layout", bad)
    data = blob.read_bytes()
    if damage == "flip a byte":
        blob.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "remove the blob":
        blob.unlink()
    else:
        blob.write_bytes(data[: len(data) // 2])
    store = store_at(tmp_path)

    with pytest.raises(ImageError, match=expected):
        store.import_source("broken", tmp_path / "layout")

    with pytest.raises(ImageNotFound):
        store.resolve("broken")
    store.remove("anything")  # takes the lock: clears what the failed import staged
    assert list((tmp_path / "images" / "tmp").iterdir()) == []
    assert list((tmp_path / "images" / "images").iterdir()) == []


def test_docker_archive_without_a_layer_or_with_a_wrong_diff_id(tmp_path: Path) -> None:
    docker_archive(tmp_path / "short.tar", [BASE, Layer().file("x")], ["x:1"], leave_out_layer=1)
    store = store_at(tmp_path)
    with pytest.raises(ImageError, match=r"lacks .*layer\.tar"):
        store.import_source("x:1", tmp_path / "short.tar")

    promised, delivered = Layer().file("x", b"promised"), Layer().file("x", b"other!!!")
    docker_archive(tmp_path / "liar.tar", [delivered], ["x:2"], claimed_diff_ids=[promised.diff_id])
    with pytest.raises(ImageError, match="corrupt: its content digest"):
        store.import_source("x:2", tmp_path / "liar.tar")

    (tmp_path / "not-a-tar").write_bytes(b"plain text")
    with pytest.raises(ImageError, match="neither a directory nor a docker-archive"):
        store.import_source("x:3", tmp_path / "not-a-tar")
    with pytest.raises(ImageError, match="no such directory or file"):
        store.import_source("x:4", tmp_path / "missing")
    assert store.list() == []


@pytest.mark.parametrize(
    ("attack", "complaint"),
    [
        ("dot-dot", "outside the layer"),
        ("through a symlink", "not a directory"),
        ("hard link to a host file", "no file to link to"),
    ],
)
def test_hostile_layers_cannot_write_outside(tmp_path: Path, attack: str, complaint: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = {
        "dot-dot": Layer().file("../../../outside/escaped", b"x"),
        "through a symlink": Layer().symlink("link", str(outside)).file("link/planted", b"x"),
        "hard link to a host file": Layer().hardlink("stolen", str(tmp_path / "secret")),
    }[attack]
    (tmp_path / "secret").write_text("host only")
    oci_layout(tmp_path / "layout", [evil])
    with pytest.raises(ImageError, match=complaint):
        store_at(tmp_path).import_source("evil", tmp_path / "layout")
    assert list(outside.iterdir()) == []
    assert (tmp_path / "secret").stat().st_nlink == 1


def test_hard_links_inside_a_layer(tmp_path: Path) -> None:
    layer = Layer().file("bin/busybox", b"bb", mode=0o755).hardlink("bin/sh", "bin/busybox")
    oci_layout(tmp_path / "layout", [layer])
    image = store_at(tmp_path).import_source("hl", tmp_path / "layout")
    assert (image.rootfs / "bin/sh").read_bytes() == b"bb"
    assert (image.rootfs / "bin/sh").stat().st_ino == (image.rootfs / "bin/busybox").stat().st_ino


def test_remove_deletes_unused_images_and_their_layers(tmp_path: Path) -> None:
    oci_layout(tmp_path / "layout", [BASE])
    store = store_at(tmp_path)
    image = store.import_source("app:1", tmp_path / "layout")
    store.import_source("app:2", tmp_path / "layout")  # a second name for the same image

    assert store.remove("app:1") is True
    assert store.remove("app:1") is False
    assert image.rootfs.is_dir()  # app:2 still names it
    assert [i.reference for i in store.list()] == ["docker.io/library/app:2"]

    assert store.remove("docker.io/library/app:2") is True
    assert not image.rootfs.exists()
    assert list((tmp_path / "images" / "layers").iterdir()) == []
    assert store.list() == []
    with pytest.raises(ImageNotFound):
        store.resolve("app:2")


def test_remove_keeps_a_rootfs_in_use_until_it_is_not(tmp_path: Path) -> None:
    oci_layout(tmp_path / "layout", [BASE])
    in_use = {"yes": True}
    store = ImageStore(tmp_path / "images", in_use=lambda rootfs: in_use["yes"])
    image = store.import_source("busy", tmp_path / "layout")

    assert store.remove("busy") is True
    with pytest.raises(ImageNotFound):
        store.resolve("busy")
    assert (image.rootfs / "etc" / "os-release").read_text() == "ID=test\n"  # a container still runs on it
    assert store.kept_images() == [image.id]

    in_use["yes"] = False
    store.remove("nothing-else")  # any later write collects it
    assert not image.rootfs.exists()
    assert store.kept_images() == []
    assert list((tmp_path / "images" / "layers").iterdir()) == []


def test_default_in_use_check_sees_a_real_mount(tmp_path: Path) -> None:
    from taskvpc.agent.images.usage import rootfs_in_use

    mounted_somewhere = Path("/proc/self/mountinfo").read_text().splitlines()[0].split()[4]
    assert rootfs_in_use(Path(mounted_somewhere)) is True
    assert rootfs_in_use(tmp_path / ("f" * 64) / "rootfs") is False


def test_retagging_replaces_the_old_image_when_unused(tmp_path: Path) -> None:
    oci_layout(tmp_path / "v1", [BASE])
    oci_layout(tmp_path / "v2", [BASE, Layer().file("v2", b"2")])
    store = store_at(tmp_path)
    old = store.import_source("app", tmp_path / "v1")
    new = store.import_source("app", tmp_path / "v2")
    assert store.resolve("app") == new and old.id != new.id
    assert not old.rootfs.exists()
    assert (new.rootfs / "etc" / "os-release").exists()  # BASE survives: v2 uses it too


def test_concurrent_imports_and_resolves_never_see_half_an_image(tmp_path: Path) -> None:
    versions = []
    for number in range(2):
        layer = Layer().file("version", str(number).encode()).file("payload", os.urandom(20_000))
        oci_layout(tmp_path / f"v{number}", [BASE, layer])
        versions.append(tmp_path / f"v{number}")
    store = store_at(tmp_path)
    store.import_source("app", versions[0])
    errors: list[BaseException] = []
    seen: set[str] = set()
    done = threading.Event()

    def importer(index: int) -> None:
        try:
            for round_ in range(8):
                store.import_source("app", versions[(index + round_) % 2])
                store.import_source(f"other{index}", versions[round_ % 2])
        except BaseException as error:
            errors.append(error)

    def resolver() -> None:
        try:
            while not done.is_set():
                image: Image = store.resolve("app")
                try:
                    seen.add((image.rootfs / "version").read_text())
                    assert (image.rootfs / "etc" / "os-release").read_text() == "ID=test\n"
                except FileNotFoundError:
                    # the image was replaced and collected after we resolved it: allowed only then
                    assert store.resolve("app").id != image.id or not image.rootfs.exists()
        except BaseException as error:
            errors.append(error)

    importers = [threading.Thread(target=importer, args=(i,)) for i in range(3)]
    resolvers = [threading.Thread(target=resolver) for _ in range(4)]
    for thread in resolvers + importers:
        thread.start()
    for thread in importers:
        thread.join(timeout=120)
    done.set()
    for thread in resolvers:
        thread.join(timeout=30)

    assert errors == []
    assert seen == {"0", "1"}
    references = json.loads((tmp_path / "images" / "refs.json").read_text())
    assert sorted(references) == ["docker.io/library/app:latest"] + [
        f"docker.io/library/other{i}:latest" for i in range(3)
    ]
    store.remove("nothing")  # collects what the last import may have left unreferenced
    stored = {f"sha256:{path.name}" for path in (tmp_path / "images" / "images").iterdir()}
    assert stored == {record["id"] for record in references.values()}
    assert list((tmp_path / "images" / "tmp").iterdir()) == []


def test_digest_reference_import_must_match(tmp_path: Path) -> None:
    manifest_digest = oci_layout(tmp_path / "layout", [BASE])
    store = store_at(tmp_path)
    with pytest.raises(ImageError, match="not sha256:0000"):
        store.import_source("app@sha256:" + "0" * 64, tmp_path / "layout")
    image = store.import_source(f"app@{manifest_digest}", tmp_path / "layout")
    assert image.reference == f"docker.io/library/app@{manifest_digest}"
    assert store.remove(f"app@{manifest_digest}") is True


def test_invalid_reference_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="lowercase"):
        store_at(tmp_path).resolve("BusyBox")
    assert digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_changed_byte_in_a_plain_layer_is_caught_by_its_digest(tmp_path: Path) -> None:
    layer = Layer().file("data", b"A" * 600)
    oci_layout(tmp_path / "layout", [layer], compress=False)
    blob = layer_blob_path(tmp_path / "layout", layer, compress=False)
    blob.write_bytes(blob.read_bytes().replace(b"A" * 600, b"A" * 599 + b"B"))  # still a valid tar
    with pytest.raises(ImageError, match=r"layer 1 is corrupt: its digest is sha256:\w+, not sha256:"):
        store_at(tmp_path).import_source("flipped", tmp_path / "layout")
    assert not (tmp_path / "images" / "layers" / layer.diff_id.partition(":")[2]).exists()


def test_busybox_rootfs_has_what_the_examples_need(tmp_path: Path) -> None:
    from taskvpc.agent.images.busybox import CONFIG, REQUIRED_APPLETS, build_rootfs

    fake_busybox = tmp_path / "busybox"  # --list answers nothing: the required applets are linked anyway
    fake_busybox.write_text("#!/bin/sh\n")
    fake_busybox.chmod(0o755)
    rootfs = build_rootfs(tmp_path / "rootfs", busybox=fake_busybox)

    assert (rootfs / "bin" / "busybox").read_text() == "#!/bin/sh\n"
    links = {path.name for path in (rootfs / "bin").iterdir() if path.is_symlink()}
    assert links >= {"sh", "httpd", "sleep", "cat", "echo", "ls", "ps", "id", "wget", "mkdir", "env"}
    assert links >= set(REQUIRED_APPLETS)
    assert all(os.readlink(rootfs / "bin" / name) == "busybox" for name in links)
    assert "root:x:0:0:" in (rootfs / "etc/passwd").read_text()
    assert "nobody:x:65534:65534:" in (rootfs / "etc/passwd").read_text()
    assert "nogroup:x:65534:" in (rootfs / "etc/group").read_text()
    for mountpoint in ("proc", "sys", "dev", "tmp"):
        assert (rootfs / mountpoint).is_dir()
    assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
    assert CONFIG.cmd == ("sh",)
    with pytest.raises(ImageError, match="busybox-static"):
        build_rootfs(tmp_path / "other", busybox=tmp_path / "absent")


def test_read_only_directories_unpack_and_remove(tmp_path: Path) -> None:
    layer = (
        Layer().dir("ro", mode=0o555).file("ro/inside", b"x").dir("ro/deeper", mode=0o500).file("ro/deeper/f")
    )
    oci_layout(tmp_path / "layout", [layer])
    store = store_at(tmp_path)
    image = store.import_source("ro", tmp_path / "layout")
    assert stat.S_IMODE((image.rootfs / "ro").stat().st_mode) == 0o555
    assert (image.rootfs / "ro" / "inside").read_bytes() == b"x"
    upper = Layer().dir("ro", mode=0o555).file("ro/added", b"y").whiteout("ro/inside")
    oci_layout(tmp_path / "layout2", [layer, upper])
    stacked = store.import_source("ro:2", tmp_path / "layout2")
    assert sorted(path.name for path in (stacked.rootfs / "ro").iterdir()) == ["added", "deeper"]
    assert stat.S_IMODE((stacked.rootfs / "ro").stat().st_mode) == 0o555
    assert store.remove("ro") is True and store.remove("ro:2") is True
    assert list((tmp_path / "images" / "images").iterdir()) == []
    assert list((tmp_path / "images" / "layers").iterdir()) == []
