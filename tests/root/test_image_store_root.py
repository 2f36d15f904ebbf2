"""The image store as root: owners, set-id bits and device nodes survive unpacking; the busybox image
runs; and ``remove`` keeps a rootfs that a real overlay mount (in a private mount namespace) still uses."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from taskvpc.agent.images import ImageNotFound, ImageStore
from taskvpc.agent.images.busybox import CONFIG, REQUIRED_APPLETS, build_rootfs
from tests.support.images import Layer, oci_layout

pytestmark = [
    pytest.mark.root,
]


def test_owners_modes_and_devices_survive(tmp_path: Path) -> None:
    layer = Layer().file("usr/bin/su", b"su", mode=0o4755).file("home/app/data", b"d", uid=1000, gid=1001)
    layer.dir("tmp", mode=0o1777)
    device = tarfile.TarInfo("dev/null")  # some images ship device nodes
    device.type, device.devmajor, device.devminor, device.mode = tarfile.CHRTYPE, 1, 3, 0o666
    layer.entries.append(device)
    oci_layout(tmp_path / "layout", [layer])

    image = ImageStore(tmp_path / "images").import_source("perm", tmp_path / "layout")

    su = (image.rootfs / "usr/bin/su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_uid == 0
    data = (image.rootfs / "home/app/data").stat()
    assert (data.st_uid, data.st_gid) == (1000, 1001)
    assert stat.S_IMODE((image.rootfs / "tmp").stat().st_mode) == 0o1777
    dev = (image.rootfs / "dev/null").stat()
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3


def test_busybox_image_runs_in_a_chroot(tmp_path: Path) -> None:
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed")
    build_rootfs(tmp_path / "bb")
    image = ImageStore(tmp_path / "images").import_source("busybox", tmp_path / "bb", CONFIG)
    assert image.config.cmd == ("sh",)
    for applet in REQUIRED_APPLETS:
        assert os.readlink(image.rootfs / "bin" / applet) == "busybox"
    script = (
        "id -un; id -u nobody; seq 3 | head -n 2; ls -d /proc /sys /dev /tmp; hostname -h >/dev/null; echo ok"
    )
    result = subprocess.run(
        ["chroot", str(image.rootfs), *image.config.cmd, "-c", script],
        env=dict(image.config.env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["root", "65534", "1", "2", "/dev", "/proc", "/sys", "/tmp", "ok"]


def test_remove_keeps_a_rootfs_that_an_overlay_uses(tmp_path: Path) -> None:
    oci_layout(tmp_path / "layout", [Layer().file("marker", b"still here")])
    store = ImageStore(tmp_path / "images")  # the real check: /proc/*/mountinfo
    image = store.import_source("inuse", tmp_path / "layout")
    for name in ("upper", "work", "merged"):
        (tmp_path / name).mkdir()
    options = f"lowerdir={image.rootfs},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}"
    # a private mount namespace: the mount dies with the process, whatever happens to the test
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"mount -t overlay overlay -o {options} {tmp_path / 'merged'} && echo ready && exec sleep 120"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        assert store.remove("inuse") is True
        with pytest.raises(ImageNotFound):
            store.resolve("inuse")
        assert (image.rootfs / "marker").read_text() == "still here"
        assert store.kept_images() == [image.id]
    finally:
        holder.kill()
        holder.wait(timeout=10)
    store.remove("anything")  # the next write collects it
    assert not image.rootfs.exists()
    assert store.kept_images() == []
