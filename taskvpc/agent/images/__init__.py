"""The agent's local OCI image store (see ``store`` for the on-disk layout and what ``remove`` keeps).

    store = ImageStore(state_dir / "images")
    image = store.resolve("busybox")          # docker.io/library/busybox:latest; ImageNotFound if absent
    image.rootfs, image.config.cmd, image.digest

Images come from ``import_source`` (a rootfs directory, an OCI layout or a ``docker save`` tar) or
``pull`` (skopeo). ``busybox.build_rootfs`` makes the examples' image from the host's busybox-static.
"""

from taskvpc.agent.images.model import Image, ImageConfig, ImageError, ImageNotFound
from taskvpc.agent.images.refs import ImageReference, InvalidReference, parse_reference
from taskvpc.agent.images.store import ImageStore

__all__ = [
    "Image",
    "ImageConfig",
    "ImageError",
    "ImageNotFound",
    "ImageReference",
    "ImageStore",
    "InvalidReference",
    "parse_reference",
]
