"""The ``runc`` runtime alone: ``RuncRuntime.start()`` until a server in the container accepts TCP.

Run as root (needs runc, overlayfs, cgroups):

    sudo .venv/bin/python bench/runc_start.py [--runs 20]

It makes a network namespace ``tvr<hex>-n``, a busybox image (``images.busybox``) and a private state
dir, then for each run starts ``httpd -f -p 127.0.0.1:8080`` in a container of a new task and connects
to it from inside the namespace until it answers; the container is stopped and removed before the next
run. Everything it made (namespace, cgroups ``/tvr<hex>``, mounts, state) is removed at the end.
Printed: median, p90, min and max of ``start()`` returning and of the server accepting, in ms.

``--extra-mounts N`` first makes the host's mount table look like a busy host's: N mounts of the
namespace file in a directory ``<tmp>/netns`` bound onto itself (private, so nothing propagates), as
``/run/netns`` holds one per task (a task also had its overlay on the host before ``mountns.py``; the
kernel's copy of a mount table costs per mount, whatever kind). They are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from taskvpc.agent.images import ImageConfig
from taskvpc.agent.images.busybox import build_rootfs
from taskvpc.agent.runtime import ContainerSpec, cgroups
from taskvpc.agent.runtime.runc import RuncRuntime

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PORT = 8080


@dataclass(frozen=True)
class Image:
    rootfs: Path
    config: ImageConfig
    digest: str = ""


@dataclass(frozen=True)
class OneImage:
    image: Image

    def resolve(self, reference: str) -> Image:
        return self.image


def add_mounts(directory: Path, source: str, count: int) -> None:
    """``count`` bind mounts of ``source`` in ``directory``, itself a private bind mount of itself."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), what)

    directory.mkdir()
    path = str(directory).encode()
    check(libc.mount(path, path, None, MS_BIND, None), f"bind {directory}")
    check(libc.mount(None, path, None, MS_PRIVATE, None), f"make-private {directory}")
    for index in range(count):
        target = directory / f"m{index}"
        target.touch()
        check(libc.mount(source.encode(), str(target).encode(), None, MS_BIND, None), f"bind {target}")


def remove_mounts(directory: Path) -> None:
    if directory.is_dir():
        ctypes.CDLL(None, use_errno=True).umount2(str(directory).encode(), MNT_DETACH)


def enter_netns(path: str) -> None:
    """This thread's sockets are made in ``path`` from now on (the shims' runc joins it by its spec)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


async def until_accepts(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            try:
                sock.connect(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        await asyncio.sleep(0.0005)


async def measure(rt: RuncRuntime, netns: str, prefix: str, runs: int) -> tuple[list[float], list[float]]:
    started, listening = [], []
    for index in range(runs):
        task = f"{prefix}-{index}"
        spec = ContainerSpec(task, "web", image="busybox", command=("httpd", "-f", "-p", f"127.0.0.1:{PORT}"))
        began = time.monotonic()
        handle = await rt.start(spec, netns, str(rt.state_dir / "tasks" / task / "web" / "log"))
        started.append((time.monotonic() - began) * 1000)
        await until_accepts(PORT)
        listening.append((time.monotonic() - began) * 1000)
        await rt.stop(handle, 0)
        await rt.remove(handle)
        rt.purge_task(task)
    return started, listening


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"{name:<24} median {statistics.median(ordered):6.1f} ms   p90 {p90:6.1f}   "
        f"min {ordered[0]:6.1f}   max {ordered[-1]:6.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--extra-mounts", type=int, default=0, help="mounts added to the host's table first")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    prefix = f"tvr{secrets.token_hex(3)}"
    netns = f"{prefix}-n"
    base = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        if args.extra_mounts:
            add_mounts(base / "netns", f"/run/netns/{netns}", args.extra_mounts)
        image = Image(build_rootfs(base / "rootfs"), ImageConfig(env=(("PATH", "/bin"),)))
        rt = RuncRuntime(base / "state", images=OneImage(image), cgroup_parent=prefix)
        enter_netns(f"/run/netns/{netns}")
        started, listening = asyncio.run(measure(rt, f"/run/netns/{netns}", prefix, args.runs))
        with open("/proc/self/mountinfo") as handle:
            mounts = sum(1 for _ in handle)
        print(f"runtime {rt.oci_runtime}, {args.runs} runs, {mounts} mounts on the host")
        print(summary("start() returned", started))
        print(summary("server accepts TCP", listening))
    finally:
        remove_mounts(base / "netns")
        subprocess.run(["ip", "netns", "del", netns], check=False)
        cgroups.remove(f"/{prefix}")
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
