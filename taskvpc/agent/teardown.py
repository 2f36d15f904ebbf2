"""Remove everything one taskvpc instance (one name prefix) made on this host: ``taskvpc down``.

What belongs to prefix ``P`` is found on the host itself, not in the state dir (which may be damaged
or gone while its tasks still run):

* network namespaces ``/run/netns/P-*`` (exactly ``P-``: prefix ``tvpc`` never touches ``tvpcx-…``);
  VPC routers hold their nftables tables and every task ENI's router end, so both go with them;
* host access links (``netplan.host_link_re``: ``Ph<hex>``); their addresses and routes go with them;
* the bridge ``P-br`` of bridge-mode tasks and its NAT table ``ip P_bridge`` (``drivers/bridge.py``);
* the cgroup tree ``/taskvpc`` (prefix ``tvpc``) or ``/taskvpc-P`` in every hierarchy;
* processes: every one in that cgroup tree or in one of those namespaces, and the runtime's shims whose
  command line names the state dir's ``tasks/`` (a ``process``-runtime task in ``host`` mode has
  neither); each is checked again by its ``/proc`` start time before it is signalled;
* mounts in this mount namespace at or below the state dir, or of a task found above wherever its state
  dir is (container root file systems).

Order: processes first (SIGTERM, SIGKILL after a grace period), so nothing re-creates what follows;
then mounts, namespaces, links and cgroups. Like the ECS agent's teardown it keeps going after an error
and reports what it could not remove. A live agent of the prefix holds ``prefix.prefix_lock``;
``taskvpc down`` refuses to run under it (the agent would start the tasks again).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from taskvpc.agent import netplan
from taskvpc.agent.drivers import netns
from taskvpc.agent.drivers.bridge import BridgeDriver, BridgeError, bridge_name
from taskvpc.agent.drivers.netlink import NetlinkDriver
from taskvpc.agent.drivers.rtnl import Rtnl, attr
from taskvpc.agent.drivers.vxlan import VxlanDriver
from taskvpc.agent.netplan import Stray
from taskvpc.agent.overlay import guard_table
from taskvpc.agent.prefix import cgroup_parent
from taskvpc.agent.runtime import cgroups, oci
from taskvpc.agent.runtime.procs import alive, cmdline, proc_start_time

SHIM_MARKERS = ("taskvpc-shim", "taskvpc.agent.runtime.shim")
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------------------- scan


@dataclass(frozen=True)
class Scope:
    """One instance's things: its name prefix and (when known) the state dir of its ``taskvpc up``."""

    prefix: str
    state_dir: Path | None = None
    netns_dir: str = netns.DEFAULT_NETNS_DIR
    cgroup_root: Path = cgroups.CGROUP_ROOT
    cgroup_parent: str | None = None  # the agent's --cgroup-parent, when it had one (an EC2 instance's)

    def __post_init__(self) -> None:
        netplan.NetConfig(prefix=self.prefix)  # ValueError for a name that is no prefix

    @property
    def cfg(self) -> netplan.NetConfig:
        return netplan.NetConfig(prefix=self.prefix, netns_dir=self.netns_dir)


@dataclass
class Found:
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, start time)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[Path] = field(default_factory=list)
    task_ids: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.namespaces or self.host_links or self.processes or self.mounts or self.cgroups)


def _namespaces(scope: Scope) -> list[str]:
    return [n for n in netns.list_names(scope.netns_dir) if netplan.parse_netns(scope.cfg, n) is not None]


def _host_links(scope: Scope) -> list[str]:
    """The prefix's access links in this process's network namespace (the agent's "host")."""
    pattern = netplan.host_link_re(scope.cfg)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    with Rtnl(sock) as nl:
        names = [attr(link, "IFLA_IFNAME", "") for link in nl.links()]
    return sorted(n for n in names if pattern.fullmatch(n))


def _cgroup_dirs(scope: Scope) -> list[Path]:
    """The prefix's cgroup directories in every hierarchy, deepest first."""
    found: list[Path] = []
    for top in cgroups.existing(scope.cgroup_parent or cgroup_parent(scope.prefix), scope.cgroup_root):
        found.extend(d for d in top.rglob("*") if d.is_dir())
        found.append(top)
    return sorted(found, key=lambda d: -len(d.parts))


def _cgroup_pids(directories: list[Path]) -> set[int]:
    pids: set[int] = set()
    for directory in directories:
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in (directory / "cgroup.procs").read_text().split())
    return pids


def _shim_dir(scope: Scope) -> str | None:
    return None if scope.state_dir is None else f"{scope.state_dir.resolve()}/agent/tasks/"


def mount_points(mountinfo: str, state_dir: Path | None, task_ids: set[str]) -> list[str]:
    """Mount points of ``mountinfo`` (``/proc/self/mountinfo``'s text) at or below the state dir, or of
    one of ``task_ids``' containers wherever their state dir is (``…/agent/tasks/<task id>/…``: found so
    even when ``down`` is given another state dir than the agent had); deepest first."""
    base = None if state_dir is None else str(state_dir.resolve())
    markers = tuple(f"/agent/tasks/{task_id}/" for task_id in task_ids)
    points = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ").removesuffix(" (deleted)")
        if (base is not None and (point == base or point.startswith(base + "/"))) or any(
            m in point for m in markers
        ):
            points.add(point)
    return sorted(points, key=len, reverse=True)


def _mountinfo() -> str:
    try:
        with open("/proc/self/mountinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def scan(scope: Scope) -> Found:
    """Everything of ``scope`` on this host now (see the module docstring)."""
    found = Found(
        namespaces=_namespaces(scope),
        host_links=_host_links(scope),
        cgroups=_cgroup_dirs(scope),
    )
    for name in found.namespaces:
        parsed = netplan.parse_netns(scope.cfg, name)
        if parsed is not None and parsed[0] in ("task", "bridged"):
            found.task_ids.add(parsed[1])
    parent = scope.cgroup_parent or cgroup_parent(scope.prefix)
    for directory in found.cgroups:
        for top in cgroups.hierarchies(scope.cgroup_root):
            with contextlib.suppress(ValueError):
                rel = directory.relative_to(top / parent).parts
                task_id = oci.task_of_cgroup(rel)  # (``<task>/<name>``, or ``<task>.<name>`` without limits)
                if task_id and _cgroup_pids([directory]):
                    found.task_ids.add(task_id)
    namespace_inodes = set()
    for name in found.namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(netns.path_of(name, scope.netns_dir))
            namespace_inodes.add((st.st_dev, st.st_ino))
    shim_dir = _shim_dir(scope)
    pids = _cgroup_pids(found.cgroups)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) in namespace_inodes:
                pids.add(pid)
                continue
        if shim_dir is not None:
            args = cmdline(pid)
            if any(m in a for m in SHIM_MARKERS for a in args):
                for arg in args:
                    if arg.startswith(shim_dir):
                        pids.add(pid)
                        found.task_ids.add(arg[len(shim_dir) :].split("/")[0])
    found.mounts = mount_points(_mountinfo(), scope.state_dir, found.task_ids)
    pids.discard(os.getpid())
    for pid in sorted(pids):
        start = proc_start_time(pid)
        if start is not None and alive(pid, start):
            found.processes.append((pid, start))
    return found


# ---------------------------------------------------------------------------------------------- remove


@dataclass
class Result:
    found: Found
    problems: list[str] = field(default_factory=list)
    left: Found | None = None
    restored: list[str] = field(default_factory=list)  # host settings put back (ip_forward)


def _signal_all(processes: list[tuple[int, int]], signum: int) -> None:
    for pid, start in processes:
        if alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


def _stop_processes(processes: list[tuple[int, int]], grace: float) -> list[str]:
    _signal_all(processes, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p, s) for p, s in processes):
        time.sleep(0.05)
    _signal_all(processes, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p, s) for p, s in processes):
        time.sleep(0.05)
    return [f"process {p} survived SIGKILL" for p, s in processes if alive(p, s)]


def _unmount(point: str) -> str | None:
    if _libc.umount2(point.encode(), MNT_DETACH) == 0:
        return None
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return None
    return f"umount {point}: {os.strerror(err)}"


def _remove_cgroups(directories: list[Path]) -> list[str]:
    problems = []
    deadline = time.monotonic() + 5
    for directory in directories:  # deepest first
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)  # its last processes are still exiting
                    continue
                problems.append(f"cgroup {directory}: {exc.strerror}")
                break
    return problems


def teardown(scope: Scope, grace: float = 3.0) -> Result:
    """Stop the scope's processes and remove its mounts, namespaces, links and cgroups."""
    found = scan(scope)
    result = Result(found)
    result.problems += _stop_processes(found.processes, grace)
    again = scan(scope)  # a shim may have started a container while we looked: once more
    result.problems += _stop_processes([p for p in again.processes if p not in found.processes], grace)
    for point in mount_points(_mountinfo(), scope.state_dir, found.task_ids | again.task_ids):
        if (problem := _unmount(point)) is not None:
            result.problems.append(problem)
    # the driver removes only names of the prefix (it checks again), and a link with its routes
    with NetlinkDriver(scope.cfg) as driver:
        strays = [Stray("netns", n) for n in _namespaces(scope)]
        strays += [Stray("link", n) for n in _host_links(scope)]
        for stray in strays:
            try:
                driver.remove_stray(stray)
            except (OSError, ValueError, NetlinkError) as exc:
                result.problems.append(f"{stray.kind} {stray.name}: {exc}")
    try:  # the bridge of bridge-mode tasks and its NAT table (drivers/bridge.py)
        if (restored := BridgeDriver(scope.cfg).remove_bridge()) is not None:
            result.restored.append(restored)
    except (OSError, BridgeError) as exc:
        result.problems.append(f"bridge {bridge_name(scope.cfg)}: {exc}")
    VxlanDriver().remove_guard(guard_table(scope.cfg))  # the overlay's underlay guard (agent/overlay.py)
    result.problems += _remove_cgroups(_cgroup_dirs(scope))
    result.left = scan(scope)
    return result
