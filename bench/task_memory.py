"""Where a task's kernel memory goes: each part of an awsvpc task made N times, with meminfo/slab diffs.

Run as root, under the shared lock (it makes namespaces, links, nft tables, cgroups and containers):

    flock /tmp/taskvpc-root.lock .venv/bin/python bench/task_memory.py [--count 300] [--containers 100]

Each part is made ``--count`` times (``--containers`` for runc), measured, then removed before the next:

* ``netns``: bare task namespaces as the data plane makes them (``netns.create`` with ``TASK_SYSCTLS``);
  ``netns-v6off`` the same with IPv6 off in the whole namespace (``all`` too, so ``lo`` has none).
* ``network``: the data plane's whole task network (``NetlinkDriver.ensure_task_network``: namespace, veth
  pair with one end in a VPC router namespace, address, routes, permanent neighbours, proxy-ARP sysctls).
* ``cgroups``: a task and a container cgroup (``/<prefix>/tN/c``) in every v1 hierarchy, as runc makes
  them; ``memcg`` the same in the memory hierarchy alone.
* ``nft``: the per-ENI chains and set elements of ``FirewallSync.add_enis`` in a router's table.
* ``runc``: complete containers (busybox httpd behind tini, 16 MiB limit, as ``bench/launch.py``), all in
  one namespace (the namespace's own cost is ``netns``/``network``), started by ``RuncRuntime``; a task
  without task-level limits, so one memory cgroup per container (``/<prefix>/<task>.<name>``).
  ``runc-limits`` the same with a task-level memory limit (64 MiB): the task's cgroup level as well.

Printed per part and per unit (KiB): MemAvailable fall, Slab, SUnreclaim, Percpu, KernelStack, PageTables,
the slab caches whose objects in use grew most, and for ``runc`` the superblocks a container's mount
namespace holds and the memory cgroups left once it is removed.
Everything carries the prefix ``tvk<hex>`` and is removed at the end, even after a failure. The machine is
shared: MemAvailable is noisy (page cache comes and goes); the slab and Percpu columns are the reliable ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from taskvpc.agent import netplan
from taskvpc.agent.drivers.netlink import NetlinkDriver
from taskvpc.agent.netplan import NetConfig, TaskEni
from taskvpc.agent.runtime import cgroups
from taskvpc.agentapi.network import Subnet

MEMINFO_FIELDS = ("MemAvailable", "Slab", "SUnreclaim", "Percpu", "KernelStack", "PageTables")


@dataclass(frozen=True)
class Snapshot:
    meminfo: dict[str, int]  # KiB
    slabs: dict[str, int]  # bytes in objects in use, per cache
    memcgs: int


def snapshot() -> Snapshot:
    meminfo = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_FIELDS:
            meminfo[key] = int(rest.split()[0])
    slabs = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        words = line.split()  # name active_objs num_objs objsize ...
        # Objects in use, not the cache's pages: a part that allocates into space an earlier part freed
        # takes no new pages (meminfo's Slab shows that, and so reads lower), but it holds the objects.
        slabs[words[0]] = int(words[1]) * int(words[3])
    memcgs = 0
    for line in Path("/proc/cgroups").read_text().splitlines():
        words = line.split()
        if words and words[0] == "memory":
            memcgs = int(words[2])
    return Snapshot(meminfo, slabs, memcgs)


def settled() -> Snapshot:
    """A snapshot once deferred frees (RCU, namespace cleanup work) have had a moment."""
    time.sleep(1.5)
    return snapshot()


@dataclass
class Result:
    part: str
    units: int
    per_unit_kib: dict[str, float]
    top_slabs: list[tuple[str, float]]
    memcgs: int
    note: str = ""

    def line(self) -> str:
        cols = "  ".join(f"{k} {v:8.1f}" for k, v in self.per_unit_kib.items())
        slabs = ", ".join(f"{name} {kib:.1f}" for name, kib in self.top_slabs)
        cols += f"  memcgs {self.memcgs / self.units:.2f}"
        return f"{self.part:<12} n={self.units:<4} {cols}\n{'':<19}slabs (KiB/unit): {slabs}" + (
            f"\n{'':<19}{self.note}" if self.note else ""
        )


def diff(part: str, units: int, before: Snapshot, after: Snapshot, note: str = "") -> Result:
    per = {k: (after.meminfo[k] - before.meminfo[k]) / units for k in MEMINFO_FIELDS}
    per["MemAvailable"] = -per["MemAvailable"]  # shown as the fall
    grown = {n: (after.slabs.get(n, 0) - before.slabs.get(n, 0)) / units / 1024 for n in after.slabs}
    top = sorted(((n, v) for n, v in grown.items() if v > 0.05), key=lambda e: -e[1])[:7]
    return Result(part, units, per, top, after.memcgs - before.memcgs, note)


# ---------------------------------------------------------------------------------------------- parts


def part_netns(prefix: str, count: int, v6off: bool) -> Result:
    from taskvpc.agent.drivers import netns
    from taskvpc.agent.drivers.netlink import TASK_SYSCTLS

    sysctls = dict(TASK_SYSCTLS)
    if v6off:
        sysctls["net/ipv6/conf/all/disable_ipv6"] = "1"
    names = [f"{prefix}n{i}" for i in range(count)]
    before = settled()
    try:
        for name in names:
            fd, sock = netns.create(name, sysctls=sysctls)
            os.close(fd)
            sock.close()
        after = settled()
    finally:
        for name in names:
            netns.remove(name)
    return diff("netns-v6off" if v6off else "netns", count, before, after)


@contextlib.contextmanager
def data_plane(prefix: str) -> Iterator[tuple[NetlinkDriver, str]]:
    cfg = NetConfig(prefix=prefix)
    vpc_id = "vpc-" + secrets.token_hex(9)[:17]
    with NetlinkDriver(cfg) as driver:
        try:
            driver.ensure_vpc_router(vpc_id, [subnet()])
            yield driver, vpc_id
        finally:
            driver.remove_vpc_router(vpc_id)


def subnet() -> Subnet:
    return Subnet.of("subnet-0k", "10.243.0.0/20")  # a test-only range inside the namespaces made here


def eni(i: int) -> TaskEni:
    return TaskEni(
        eni_id=f"eni-{secrets.token_hex(9)[:17]}",
        mac=f"02:7e:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        ip=f"10.243.{(i + 10) // 250}.{(i + 10) % 250 + 2}",
        prefix_len=20,
        gateway="10.243.0.1",
        task_key=f"k{i}-{secrets.token_hex(3)}",
    )


def part_network(prefix: str, count: int) -> Result:
    with data_plane(prefix) as (driver, vpc_id):
        enis = [eni(i) for i in range(count)]
        before = settled()
        try:
            for e in enis:
                driver.ensure_task_network(vpc_id, e)
            after = settled()
            note = queues_note(netplan.router_netns(driver.cfg, vpc_id))
        finally:
            for e in enis:
                driver.remove_task_network(e.task_key)
    return diff("network", count, before, after, note)


def queues_note(router_ns: str) -> str:
    """How many queues a router port (one end of a task's veth) has, each way."""
    out = subprocess.run(
        ["ip", "-n", router_ns, "-d", "-j", "link", "show", "type", "veth"], capture_output=True, text=True
    ).stdout
    links = json.loads(out or "[]")
    if not links:
        return ""
    return f"a router port's queues: tx {links[0].get('num_tx_queues')}, rx {links[0].get('num_rx_queues')}"


def part_cgroups(prefix: str, count: int, memory_only: bool) -> Result:
    roots = [h for h in cgroups.hierarchies() if not memory_only or h.name == "memory"]
    made = [h / prefix for h in roots]
    before = settled()
    try:
        for i in range(count):
            for top in made:
                (top / f"t{i}" / "c").mkdir(parents=True)
        after = settled()
    finally:
        cgroups.remove(f"/{prefix}")
    note = f"{len(roots)} hierarchies: {', '.join(h.name for h in roots)}"
    memcgs = after.memcgs - before.memcgs
    if memcgs > 0:
        # A memcg holds a 1 KiB shrinker_info unit per 64 memcg-aware shrinker ids (one per superblock)
        # up to the highest id the host has ever used (mm/shrinker.c: it never shrinks).
        units = (after.slabs.get("kmalloc-1k", 0) - before.slabs.get("kmalloc-1k", 0)) / 1024 / memcgs
        note += f"; {memcgs} memcgs, kmalloc-1k {units:.0f} per memcg (~{units * 64:.0f} shrinker ids)"
    return diff("memcg" if memory_only else "cgroups", count, before, after, note)


def part_nft(prefix: str, count: int) -> Result:
    from taskvpc.agent.drivers.firewall import FirewallDriver
    from taskvpc.agent.security import FirewallSync
    from taskvpc.netmodel.evaluator import GroupRules
    from taskvpc.netmodel.firewall_ir import EniPort
    from taskvpc.netmodel.security_groups import Rule, new_group_egress

    web = GroupRules(
        "sg-web", (Rule("ingress", "tcp", 8080, 8080, cidr_ipv4="0.0.0.0/0"),), (new_group_egress(),)
    )
    table = f"{prefix}fw"
    with data_plane(prefix) as (driver, vpc_id), FirewallDriver(driver.cfg) as fw:
        try:
            sync = FirewallSync(fw, driver.cfg, table=table)
            sync.set_desired({vpc_id: {"sg-web": web}}, {})
            sync.add_enis(
                vpc_id, [EniPort("eni-" + "0" * 17, "p0", "10.243.15.250", "02:7e:ff:00:00:01", ("sg-web",))]
            )
            ports = [eni(i) for i in range(count)]
            before = settled()
            for start in range(0, count, 50):
                batch = ports[start : start + 50]
                sync.add_enis(
                    vpc_id,
                    [
                        EniPort(e.eni_id, f"{prefix}p{start + j}", e.ip, e.mac, ("sg-web",))
                        for j, e in enumerate(batch)
                    ],
                )
            after = settled()
        finally:
            fw.remove(vpc_id, table)
    return diff(
        "nft", count, before, after, note="per ENI: two chains, its rules, its address in the group's set"
    )


def part_runc(prefix: str, count: int, task_memory: int | None = None) -> Result:
    from runc_start import Image, OneImage  # bench/runc_start.py, beside this file

    from taskvpc.agent.drivers import netns
    from taskvpc.agent.images import ImageConfig
    from taskvpc.agent.images.busybox import build_rootfs
    from taskvpc.agent.runtime import ContainerHandle, ContainerSpec
    from taskvpc.agent.runtime.runc import RuncRuntime

    base = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    ns_name = f"{prefix}-r"
    fd, sock = netns.create(ns_name)
    os.close(fd)
    sock.close()
    ns_path = netns.path_of(ns_name)
    image = Image(build_rootfs(base / "rootfs"), ImageConfig(env=(("PATH", "/bin"),)))
    rt = RuncRuntime(base / "state", images=OneImage(image), cgroup_parent=prefix)
    handles: list[ContainerHandle] = []
    note = ""

    async def run() -> tuple[Snapshot, Snapshot]:
        nonlocal note
        before = settled()
        for i in range(count):
            spec = ContainerSpec(
                f"{prefix}t{i}",
                "listener",
                image="busybox",
                entry_point=("busybox",),
                command=("httpd", "-f", "-p", str(20000 + i)),
                memory=16,
                init_process_enabled=True,
                task_memory=task_memory,
            )
            log = str(rt.state_dir / "tasks" / spec.task_id / spec.name / "log")
            handles.append(await rt.start(spec, ns_path, log))
        await asyncio.sleep(1)
        after = settled()
        note = superblocks_note()
        return before, after

    async def clean() -> None:
        for handle in handles:
            with contextlib.suppress(Exception):
                await rt.stop(handle, 0)
            with contextlib.suppress(Exception):
                await rt.remove(handle)
        for i in range(count):
            with contextlib.suppress(Exception):
                rt.purge_task(f"{prefix}t{i}")

    async def main() -> tuple[Snapshot, Snapshot]:
        try:
            return await run()
        finally:
            await clean()

    try:
        before, after = asyncio.run(main())
    finally:
        netns.remove(ns_name)
        cgroups.remove(f"/{prefix}")
        shutil.rmtree(base, ignore_errors=True)
    time.sleep(5)
    left = snapshot()
    # A removed memcg that still has pages charged (page cache its processes read) lives on, dying, with
    # its shrinker units, until those pages are reclaimed.
    note += (
        f"; after removal: {left.memcgs - before.memcgs} memcgs of the {after.memcgs - before.memcgs} left"
    )
    note += f", Slab {(left.meminfo['Slab'] - before.meminfo['Slab']) / count:.1f} KiB/unit"
    return diff("runc" if task_memory is None else "runc-limits", count, before, after, note)


def superblocks_note() -> str:
    """The filesystems (superblocks, each a memcg-aware shrinker with an id of its own) one container uses:
    the anonymous ones of its mount table (device major 0) but the v1 hierarchies, which every container
    shares with the host."""
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "busybox":
                continue
            lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        except OSError:
            continue
        own: dict[str, str] = {}
        for line in lines:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fields[2].startswith("0:") and fstype not in ("cgroup", "cgroup2"):
                own.setdefault(fields[2], f"{fields[4]} ({fstype})")
        return f"a container's own superblocks: {len(own)}: {', '.join(own.values())}"
    return ""


PARTS: dict[str, Callable[[str, argparse.Namespace], Result]] = {
    "netns": lambda p, a: part_netns(p, a.count, v6off=False),
    "netns-v6off": lambda p, a: part_netns(p, a.count, v6off=True),
    "network": lambda p, a: part_network(p, a.count),
    "cgroups": lambda p, a: part_cgroups(p, a.count, memory_only=False),
    "memcg": lambda p, a: part_cgroups(p, a.count, memory_only=True),
    "nft": lambda p, a: part_nft(p, a.count),
    "runc": lambda p, a: part_runc(p, a.containers),
    "runc-limits": lambda p, a: part_runc(p, a.containers, task_memory=64),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: " + ", ".join(PARTS))
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    results = []
    for part in args.parts.split(","):
        prefix = f"tvk{secrets.token_hex(2)}"
        result = PARTS[part](prefix, args)
        print(result.line(), flush=True)
        results.append(result)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
