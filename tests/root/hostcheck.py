"""What root tests leave on the host: find it by the test's name prefix, remove it, and wait until gone."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

_LISTINGS = (
    ["ip", "netns", "list"],
    ["ip", "-br", "link"],
    ["ip", "-br", "addr"],
    ["ip", "route"],
    ["nft", "list", "tables"],
)


def _lines(command: list[str]) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()


def namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in _lines(["ip", "netns", "list"]) if line.startswith(prefix)]


def cgroups(prefix: str) -> list[Path]:
    """Cgroup directories (any hierarchy, any depth below the top) whose name mentions ``prefix``."""
    root = Path("/sys/fs/cgroup")
    tops = [root] if (root / "cgroup.controllers").exists() else [d for d in root.iterdir() if d.is_dir()]
    found = []
    for top in tops:
        for entry in top.iterdir() if top.is_dir() else ():
            if entry.is_dir() and prefix in entry.name:
                found.extend(sorted((d for d in entry.rglob("*") if d.is_dir()), reverse=True))
                found.append(entry)
    return found


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (overlay roots of containers, their binds)."""
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == str(path) or point.startswith(f"{path}/"):
                points.append(point)
    return points


def leftovers(prefix: str) -> list[str]:
    """Every namespace, link, address, route, nft table line and cgroup that mentions ``prefix``."""
    lines = [f"{' '.join(cmd)}: {line}" for cmd in _LISTINGS for line in _lines(cmd) if prefix in line]
    return lines + [f"cgroup: {d}" for d in cgroups(prefix)]


def scrub(prefix: str) -> None:
    """Remove the prefix's namespaces (their veths and tables go with them), host links and cgroups."""
    for name in namespaces(prefix):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for line in _lines(["ip", "-br", "link"]):
        ifname = line.split()[0].partition("@")[0]
        if ifname.startswith(prefix):
            subprocess.run(["ip", "link", "del", ifname], capture_output=True, check=False)
    subprocess.run(["nft", "delete", "table", "ip", f"{prefix}_bridge"], capture_output=True, check=False)
    # the bridge's ip_forward note (taskvpc/agent/drivers/forwarding.py): its namespace goes with the test
    Path(f"/run/taskvpc/{prefix}.ip_forward").unlink(missing_ok=True)
    for directory in cgroups(prefix):  # deepest first; a cgroup with processes left stays (and is reported)
        with contextlib.suppress(OSError):
            directory.rmdir()


def unmount_under(path: Path) -> None:
    for point in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def wait_clean(prefix: str, timeout: float = 10.0) -> list[str]:
    """The kernel frees namespaces (and the veths in them) asynchronously: poll until nothing is left."""
    deadline = time.monotonic() + timeout
    left = leftovers(prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftovers(prefix)
    return left


def our_pids(state: Path, netns: str) -> list[int]:
    """Live processes a runtime test started: shims of its state dir and every process in its namespace."""
    from taskvpc.agent.runtime.procs import alive, cmdline, proc_start_time

    pids = []
    inode = os.stat(netns).st_ino
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        if any(str(state) in arg for arg in cmdline(pid)):
            pids.append(pid)
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                pids.append(pid)
    return [p for p in pids if alive(p, proc_start_time(p))]
