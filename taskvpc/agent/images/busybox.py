"""The examples' image, made from the host's Debian ``busybox-static`` package: no registry needed.

A static busybox runs in any root file system, so the image is the binary, one symlink per applet, the
two users a web server needs (root, nobody), and the directories runc mounts over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from taskvpc.agent.images.model import ImageConfig, ImageError
from taskvpc.agent.images.store import ImageStore

BUSYBOX = Path("/bin/busybox")
REFERENCE = "busybox:latest"
CONFIG = ImageConfig(
    cmd=("sh",),
    env=(("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),),
)
# Linked even if ``busybox --list`` cannot be asked: the examples and tests rely on these.
REQUIRED_APPLETS = (
    "sh", "httpd", "sleep", "cat", "echo", "ls", "ps", "id", "wget", "mkdir", "env", "true", "false",
    "dd", "head", "hostname", "seq", "yes", "kill", "grep", "touch", "rm", "nc", "ip", "top", "free",
)  # fmt: skip
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n"


def _applets(busybox: Path) -> list[str]:
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=False)
    found = {name for name in listing.stdout.split() if name and "/" not in name}
    return sorted(found | set(REQUIRED_APPLETS))


def build_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Create the root file system in ``dest`` (which must not exist yet) and return it."""
    if not busybox.is_file():
        raise ImageError(f"{busybox} not found: install the Debian package busybox-static")
    dest.mkdir(mode=0o755)
    for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "var/www", "usr/bin", "sbin"):
        (dest / directory).mkdir(mode=0o755, parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "root").chmod(0o700)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in _applets(busybox):
        if applet != "busybox":
            (dest / "bin" / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(_PASSWD)
    (dest / "etc" / "group").write_text(_GROUP)
    (dest / "etc" / "hostname").write_text("busybox\n")
    _stamp(dest, busybox.stat().st_mtime)
    return dest


def _stamp(rootfs: Path, mtime: float) -> None:
    """Every entry gets the binary's mtime, so the same busybox always makes the same image (digest):
    ``make up`` re-imports it at no cost."""
    paths = sorted(rootfs.rglob("*"), key=lambda p: len(p.parts), reverse=True)  # children before parents
    for path in [*paths, rootfs]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)


# The examples name the image as on AWS (ECR Public's copy of Docker's busybox), so the same task
# definition runs there and here; here both names are this local busybox.
EXAMPLE_REFERENCES = (REFERENCE, "public.ecr.aws/docker/library/busybox:stable")


def ensure_example_images(store: ImageStore, busybox: Path = BUSYBOX) -> list[str]:
    """Import the examples' image under each of ``EXAMPLE_REFERENCES`` that the store lacks; those imported."""
    missing = []
    for reference in EXAMPLE_REFERENCES:
        try:
            store.resolve(reference)
        except ImageError:
            missing.append(reference)
    if missing:
        store.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="taskvpc-busybox-", dir=store.root) as scratch:
            rootfs = build_rootfs(Path(scratch) / "rootfs", busybox)
            for reference in missing:
                store.import_source(reference, rootfs, CONFIG)
    return missing
