"""Is an image's root file system in use? Asked before ``remove`` deletes one.

A container's root is an overlay (or a bind mount) of the image's rootfs, in the host's mount namespace
or in the container's own. Either way some process's ``/proc/PID/mountinfo`` names the directory: as the
overlay's ``lowerdir=`` option, or as the mount's root. Every mount namespace is read once.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def rootfs_in_use(rootfs: Path) -> bool:
    needle = str(rootfs)
    # a bind mount's root is shown relative to its file system, so match on the distinctive tail too
    tail = "/".join(rootfs.parts[-2:])
    seen: set[str] = set()
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            namespace = os.readlink(f"{entry.path}/ns/mnt")
            if namespace in seen:
                continue
            seen.add(namespace)
            mountinfo = Path(entry.path, "mountinfo").read_text(errors="replace")
        except OSError:
            continue  # gone, or not ours to read
        if needle in mountinfo or _names_tail(mountinfo, tail):
            return True
    return False


def _names_tail(mountinfo: str, tail: str) -> bool:
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 3 and (fields[3].rstrip("/").endswith(tail)):
            return True
    return False
