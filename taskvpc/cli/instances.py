"""The host supervisor of ``taskvpc up``: every EC2 instance (RunInstances) as a lightweight host here.

An instance's host is made of:

* a network namespace ``<P>i-<instance id>`` (``P`` is ``up``'s ``--net-prefix``; not ``P-…``, which
  the local agent would remove as a stray of its own prefix) with ``lo`` and ``eth0``, the instance's
  link to the *underlay* (below), which also holds the primary ENI's address as a ``/32``;
* a cgroup ``taskvpc-instances-<P>/<instance id>`` limited to the type's vCPUs and memory, holding the
  agent process (in its leaf ``agent``) and the instance's tasks (under ``ecs-tasks``: the agent's
  ``--cgroup-parent``), so the type's limits bound the tasks as on a real instance;
* a ``taskvpc agent`` started in that namespace (``nsenter --net``), so the namespace is its host. It
  gets its own name prefix (:func:`instance_prefix`: two agents of one prefix would remove each
  other's tasks), the instance's id (pre-written to its state), type, subnet, the image's OS family and
  the user data as its ``/etc/ecs/ecs.config``;
* the path to the control plane: a listening socket that this process opens *inside* the namespace on
  ``127.0.0.1:<up's port>`` (a socket stays in the namespace it was made in), relayed to ``up``'s own
  listener. The agent's endpoint is therefore ``http://127.0.0.1:<port>`` in every instance, and
  nothing is routed between the namespace and the machine.

A reconcile pass (:func:`plan`, pure; then ``ensure_host``/``remove_host``) runs every second: instances
``pending``/``running`` get a host (``pending`` becomes ``running`` once its agent is started); those
``stopping``/``shutting-down`` lose theirs, then become ``stopped``/``terminated`` (the control plane
stops their ECS tasks and deregisters them then); a namespace of ours that no live instance explains is
removed.

Host loss: a ``running`` instance whose namespace is gone is a host lost, not one to remake (an agent
that merely died, its namespace still there, is restarted and adopts its tasks). Once it has been gone
for the detection window (``--host-loss-window``), the instance is terminated as EC2 reports a lost
instance (``instances_state.host_lost``: tasks stopped with ECS's terminated-host reason, ENIs and
addresses released, the container instance deregistered, so services place replacements elsewhere), and
whatever is left of it here (its agent if still alive, its tasks' namespaces and processes) is removed.
Only a host this supervisor has seen can be lost: a ``running`` instance whose host it never saw (after
``taskvpc down``, a reboot of the machine, or the lead moving here) is booted again (namespace, cgroup,
agent), as an EC2 host that restarts brings its instances back; its agent registers again with the same
container instance, and what it finds of its tasks it adopts (after ``down``, which records the tasks
of every host stopped, there are none).

With several ``taskvpc up`` on one PostgreSQL, one supervisor runs: the one holding the
``instance-hosts`` lead (the reconcilers' advisory locks, ``taskvpc.control.reconcile.leadership``).
Agents die with ``up`` (PR_SET_PDEATHSIG); the next ``up`` starts new ones, which adopt the
tasks. ``taskvpc down`` and ``up --cleanup-on-exit`` call :func:`remove_all`.

The underlay (what VPCs spanning instances ride on, ``taskvpc/agent/overlay.py``): each instance's
``eth0`` is a veth whose other end (``<P>u<6 hex>``) is a port of the bridge ``<P>-ul`` in this
process's namespace, MTU 1550 (1500 for the tasks plus VXLAN's 50), with a link-local address of its own
from :data:`UNDERLAY_NET` (kept in the instance's state directory; :func:`underlay_address`), which its
agent gets as ``--underlay-address``. Link-local rather than the primary ENI's address: a prefix of
the VPC in the instance's namespace would overlap the routes the agent makes from there to its tasks.
The primary address is there alone (``/32``, no route), which the agent's host access tolerates.
The bridge has no address: nothing is routed between the instances and this machine.

``up``'s own local agent is on the underlay too (:func:`ensure_local_underlay`), in the same way: the
namespace ``<P>ul`` whose ``eth0`` (port ``<P>uhost``) holds its underlay address. The agent itself runs
in the machine's namespace, as always, and is given ``--underlay-netns <P>ul``: its VXLAN devices are
created from that namespace (their sockets live there) and its underlay guard is loaded there, so the
machine's namespace holds neither a VXLAN socket nor a route into the underlay.

The instances share this machine's kernel: a namespace and a cgroup are isolation, not a VM.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskvpc.agent.runtime import cgroups
from taskvpc.agent.state import STATE_FILE, AgentState, save_state
from taskvpc.cli.config import Credentials
from taskvpc.domain import instance_types

Doc = dict[str, Any]
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("taskvpc.instances")
HOST_STATES = ("pending", "running")
HOST_LOSS_WINDOW = 5.0  # seconds a running instance's namespace may be missing before its host is lost
LEAD = "instance-hosts"  # the supervisor's lead among control planes sharing one store
GOING = {"stopping": "stopped", "shutting-down": "terminated"}
UNDERLAY_NET = ipaddress.IPv4Network("169.254.192.0/19")  # link-local: never a VPC's, nor 169.254.169/170
UNDERLAY_MTU = 1550  # the tasks' 1500 plus VXLAN's 50
LOCAL_UNDERLAY_FILE = "underlay"  # in up's state dir: the local agent's underlay address, once chosen


def instance_prefix(prefix: str, instance_id: str) -> str:
    """The name prefix of an instance's agent: ``i`` and 6 hex digits (2-7 characters, as netplan wants)."""
    return "i" + hashlib.sha256(f"{prefix}/{instance_id}".encode()).hexdigest()[:6]


def netns_name(prefix: str, instance_id: str) -> str:
    return f"{prefix}i-{instance_id}"


def cgroup_path(prefix: str, instance_id: str | None = None) -> str:
    top = f"taskvpc-instances-{prefix}"
    return f"{top}/{instance_id}" if instance_id else top


def agent_cgroup_path(prefix: str, instance_id: str) -> str:
    """The agent's own leaf (cgroup v2 lets no process sit beside child cgroups with controllers)."""
    return f"{cgroup_path(prefix, instance_id)}/agent"


def tasks_cgroup_path(prefix: str, instance_id: str) -> str:
    """Where the instance's agent puts its tasks' cgroups: inside the instance's, under its limits."""
    return f"{cgroup_path(prefix, instance_id)}/ecs-tasks"  # not "tasks": a file of every cgroup v1 directory


# ---- plan -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    ensure: list[Doc]  # instances that need a host (and an agent)
    started: list[str]  # pending instances whose host is up: mark running
    remove: list[str]  # instance ids whose host goes
    finish: list[tuple[str, str]]  # (instance id, stopped|terminated) once the host is gone
    strays: list[str]  # instance ids with a namespace here and no instance record
    missing: list[str] = field(default_factory=list)  # running, namespace gone: a host being lost
    lost: list[str] = field(default_factory=list)  # missing for the whole window: lost for good


def plan(
    instances: list[Doc],
    hosts: set[str],
    live_agents: set[str],
    missing_since: dict[str, float] | None = None,
    now: float = 0.0,
    window: float = HOST_LOSS_WINDOW,
    seen: set[str] | None = None,
) -> Plan:
    """What to do, from the instances' records, the namespaces present, the agents alive, since when
    each running instance's namespace has been seen missing, and the instances whose host this
    supervisor has seen on the machine (None: every one).

    A running instance whose host was never seen here is booted again, not lost: the machine was
    rebooted or ``taskvpc down`` removed the hosts while nothing supervised them, as when an EC2 host
    restarts its instances. One whose host was seen and then went is a host lost."""
    ensure, started, remove, finish, missing, lost = [], [], [], [], [], []
    since = missing_since or {}
    known = set()
    for doc in instances:
        iid, name = doc["InstanceId"], doc["State"]["Name"]
        known.add(iid)
        booting = seen is not None and iid not in seen
        if name == "running" and iid not in hosts and not booting:  # a lost host is never remade
            missing.append(iid)
            if now - since.get(iid, now) >= window:
                lost.append(iid)
            continue
        if name in HOST_STATES:
            if iid not in hosts or iid not in live_agents:
                ensure.append(doc)
            if name == "pending":
                started.append(iid)
        elif name in GOING:
            remove.append(iid)
            finish.append((iid, GOING[name]))
        elif iid in hosts:
            remove.append(iid)
    strays = sorted(hosts - known)
    return Plan(ensure, started, remove, finish, strays, missing, lost)


# ---- drivers --------------------------------------------------------------------------------------


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def hosts_present(prefix: str) -> set[str]:
    head = f"{prefix}i-"
    try:
        return {p.name[len(head) :] for p in NETNS_DIR.iterdir() if p.name.startswith(head)}
    except OSError:
        return set()


def underlay_bridge(prefix: str) -> str:
    return f"{prefix}-ul"


def underlay_port(prefix: str, instance_id: str) -> str:
    return f"{prefix}u{instance_prefix(prefix, instance_id)[1:]}"


def _kept_underlay(kept: Path, state_dir: Path, seed: str) -> str:
    """The address kept in ``kept``, else one chosen from ``seed`` past every other host's of this
    state dir (the instances' and the local agent's), and kept."""
    with contextlib.suppress(OSError, ValueError):
        return str(ipaddress.IPv4Address(kept.read_text().strip()))
    taken = set()
    with contextlib.suppress(OSError):
        others = [*(state_dir / "instances").glob("*/underlay"), state_dir / LOCAL_UNDERLAY_FILE]
        taken = {p.read_text().strip() for p in others if p.exists()}
    size = UNDERLAY_NET.num_addresses - 2
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % size
    for step in range(size):
        candidate = str(UNDERLAY_NET.network_address + 1 + (start + step) % size)
        if candidate not in taken:
            break
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(candidate)
    return candidate


def underlay_address(state_dir: Path, instance_id: str) -> str:
    """The instance's underlay address: kept in its state directory once chosen (from its id, past
    any other host's)."""
    return _kept_underlay(instance_dir(state_dir, instance_id) / "underlay", state_dir, instance_id)


def local_underlay_netns(prefix: str) -> str:
    """The local agent's underlay namespace: not ``P-…`` (the agent's strays) nor ``Pi-…`` (instances')."""
    return f"{prefix}ul"


def local_underlay_port(prefix: str) -> str:
    return f"{prefix}uhost"


def _ensure_underlay_link(prefix: str, namespace: str, port: str, address: str | None) -> None:
    """``namespace`` with ``lo`` up and ``eth0``, a veth whose other end ``port`` is on the bridge."""
    if not (NETNS_DIR / namespace).exists():
        _run("ip", "netns", "add", namespace)
    _run("ip", "-n", namespace, "link", "set", "lo", "up")
    bridge = underlay_bridge(prefix)
    if _run("ip", "link", "show", bridge).returncode != 0:
        _run("ip", "link", "add", bridge, "mtu", str(UNDERLAY_MTU), "type", "bridge")
    _run("ip", "link", "set", bridge, "up")
    if _run("ip", "link", "show", port).returncode != 0:
        _run("ip", "-n", namespace, "link", "del", "eth0")  # a half-made pair
        _run("ip", "link", "add", port, "mtu", str(UNDERLAY_MTU), "type", "veth",
             "peer", "name", "eth0", "netns", namespace, "mtu", str(UNDERLAY_MTU))  # fmt: skip
    _run("ip", "link", "set", port, "master", bridge, "up")
    if address:
        _run("ip", "-n", namespace, "addr", "replace", f"{address}/{UNDERLAY_NET.prefixlen}", "dev", "eth0")
    _run("ip", "-n", namespace, "link", "set", "eth0", "up")


def ensure_local_underlay(prefix: str, state_dir: Path) -> tuple[str, str] | None:
    """The local agent's place on the underlay, made as an instance's is (a namespace whose ``eth0`` is
    a port of the bridge): (its address, the namespace), for ``--underlay-address``/``--underlay-netns``.
    The machine's own namespace gets only the bridge and the port: no address, route or VXLAN socket.
    None when the kernel refused it (no bridge or veth here): the local agent then stays off the overlay."""
    seed = f"local/{socket.gethostname()}/{prefix}"
    address = _kept_underlay(state_dir / LOCAL_UNDERLAY_FILE, state_dir, seed)
    namespace = local_underlay_netns(prefix)
    _ensure_underlay_link(prefix, namespace, local_underlay_port(prefix), address)
    shown = _run("ip", "-n", namespace, "-o", "-4", "addr", "show", "dev", "eth0")
    if f" {address}/" not in shown.stdout:
        log.warning("local underlay not made: %s", shown.stderr.strip() or "no address on eth0")
        return None
    return address, namespace


def ensure_namespace(prefix: str, doc: Doc, underlay: str | None = None) -> None:
    """The namespace, and ``eth0`` on the underlay bridge with ``underlay`` (see the module docstring)."""
    name = netns_name(prefix, doc["InstanceId"])
    _ensure_underlay_link(prefix, name, underlay_port(prefix, doc["InstanceId"]), underlay)
    if doc.get("PrivateIpAddress"):  # the primary ENI's address, alone: no route into the VPC from here
        _run("ip", "-n", name, "addr", "replace", f"{doc['PrivateIpAddress']}/32", "dev", "eth0")


def ensure_cgroup(prefix: str, doc: Doc) -> str:
    """The instance's cgroup with the type's limits; returns the agent's leaf in it."""
    kind = instance_types.lookup(doc["InstanceType"])
    path = cgroup_path(prefix, doc["InstanceId"])
    if kind is not None:
        cgroups.setup_task(path, kind.cpu_units, kind.memory_mib)
    for directory in cgroups.existing(path):
        (directory / "agent").mkdir(exist_ok=True)
    return agent_cgroup_path(prefix, doc["InstanceId"])


def _setns(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as handle:
        if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")


def listen_in(namespace: Path, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` inside ``namespace`` (made on a thread that enters it)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            _setns(namespace)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
            made.append(sock)
        except BaseException as exc:  # handed to the caller's thread
            made.append(exc)

    thread = threading.Thread(target=make)  # a thread that dies in the namespace: ours stays put
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class Relay:
    """Accepts in an instance's namespace and pipes each connection to the control plane's listener."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.listener = listener
        self.target = target
        self._thread = threading.Thread(target=self._accept, daemon=True, name="instance-relay")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class Launch:
    """How ``up`` starts agents: its port, state dir, prefix, credentials, region, runtime."""

    port: int
    state_dir: Path
    prefix: str
    credentials: Credentials
    region: str
    runtime: str
    target_host: str = "127.0.0.1"


def instance_dir(state_dir: Path, instance_id: str) -> Path:
    return state_dir / "instances" / instance_id


def start_agent(launch: Launch, doc: Doc, cgroup: str) -> subprocess.Popen[bytes]:
    iid = doc["InstanceId"]
    home = instance_dir(launch.state_dir, iid)
    agent_dir = home / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    if not (agent_dir / STATE_FILE).exists():
        save_state(agent_dir, AgentState(iid))  # registers with the instance's own id
    config = home / "ecs.config"
    config.write_text(doc.get("_UserData", ""))
    kind = instance_types.lookup(doc["InstanceType"])
    command = [
        "nsenter",
        f"--net={NETNS_DIR / netns_name(launch.prefix, iid)}",
        sys.executable,
        "-m",
        "taskvpc.agent.main",
        "--endpoint",
        f"http://127.0.0.1:{launch.port}",
        "--state-dir",
        str(agent_dir),
        "--region",
        launch.region,
        "--net-prefix",
        instance_prefix(launch.prefix, iid),
        "--runtime",
        launch.runtime,
        "--instance-type",
        doc["InstanceType"],
        "--subnet-id",
        doc["SubnetId"],
        "--os-family",
        doc.get("_OsFamily", "LINUX"),
        "--ecs-config",
        str(config),
        "--cgroup-parent",
        tasks_cgroup_path(launch.prefix, iid),
        "--underlay-address",
        underlay_address(launch.state_dir, iid),
    ]
    if kind is not None:  # what the agent registers: the type's size, not this machine's
        command += ["--cpu", str(kind.cpu_units), "--memory", str(max(0, kind.memory_mib - 256))]
    env = {
        **os.environ,
        "TASKVPC_ACCESS_KEY_ID": launch.credentials.access_key_id,
        "TASKVPC_SECRET_ACCESS_KEY": launch.credentials.secret_access_key,
    }
    procs = [d / "cgroup.procs" for d in cgroups.existing(cgroup)]

    def in_child() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        for path in procs:  # the agent, and everything it starts itself, within the type's limits
            with contextlib.suppress(OSError):
                path.write_text("0")

    log_file = open(home / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            command, env=env, preexec_fn=in_child, start_new_session=True, stdout=log_file, stderr=log_file
        )
    finally:
        log_file.close()


def stop_agent(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


def remove_host(prefix: str, state_dir: Path, instance_id: str) -> list[str]:
    """Tear down what the instance's agent made, then its namespace and cgroup; the problems left."""
    from taskvpc.agent.teardown import Scope, teardown

    home = instance_dir(state_dir, instance_id)  # like up's state dir: the agent's is home/agent
    scope = Scope(
        instance_prefix(prefix, instance_id), home, cgroup_parent=tasks_cgroup_path(prefix, instance_id)
    )
    result = teardown(scope, grace=2.0)
    problems = [str(p) for p in result.problems]
    name = netns_name(prefix, instance_id)
    if (NETNS_DIR / name).exists():
        done = _run("ip", "netns", "del", name)
        if done.returncode != 0:
            problems.append(f"netns {name}: {done.stderr.strip()}")
    _run("ip", "link", "del", underlay_port(prefix, instance_id))  # gone with eth0 already, as a rule
    _kill_cgroup(cgroup_path(prefix, instance_id))
    cgroups.remove(cgroup_path(prefix, instance_id))
    return problems


def _kill_cgroup(path: str) -> None:
    """SIGKILL whatever is left in the instance's cgroup and below (an agent ``up`` no longer knows by
    PID, a task's process)."""
    for top in cgroups.existing(path):
        for procs in [top / "cgroup.procs", *top.rglob("*/cgroup.procs")]:
            with contextlib.suppress(OSError):
                for line in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(line), signal.SIGKILL)


def remove_all(prefix: str, state_dir: Path) -> int:
    """``taskvpc down``: every instance host of ``prefix`` on this machine; how many there were."""
    found = hosts_present(prefix)
    for instance_id in sorted(found):
        _kill_cgroup(cgroup_path(prefix, instance_id))
        for problem in remove_host(prefix, state_dir, instance_id):
            print(f"taskvpc: instance {instance_id}: not removed: {problem}", file=sys.stderr)
    cgroups.remove(cgroup_path(prefix))
    remove_local_underlay(prefix)
    _run("ip", "link", "del", underlay_bridge(prefix))
    return len(found)


def remove_local_underlay(prefix: str) -> None:
    """The local agent's underlay namespace (its port goes with ``eth0``; the VXLAN devices made from
    it, in the local routers, go with it too: their sockets lived there)."""
    if (NETNS_DIR / local_underlay_netns(prefix)).exists():
        _run("ip", "netns", "del", local_underlay_netns(prefix))
    _run("ip", "link", "del", local_underlay_port(prefix))


# ---- the supervisor -------------------------------------------------------------------------------


class InstanceHosts:
    """Runs :func:`plan` and its drivers every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self,
        launch: Launch,
        context: Callable[[str], Any],
        interval: float = 1.0,
        *,
        loss_window: float = HOST_LOSS_WINDOW,
        leadership: Any = None,  # a taskvpc.control.reconcile.Leadership; None: the only supervisor
    ) -> None:
        self.launch = launch
        self.context = context  # region -> a fresh RequestContext
        self.interval = interval
        self.loss_window = loss_window
        self.leadership = leadership
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.relays: dict[str, Relay] = {}
        self.missing_since: dict[str, float] = {}  # running instances whose namespace is gone, since
        self.seen: set[str] = set()  # instances whose host this supervisor found or made on the machine
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="instance-hosts", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile()
            except Exception:  # one bad pass must not end supervision; the next retries
                log.exception("instance hosts: reconcile failed")
            self._stopping.wait(self.interval)

    def reconcile(self) -> None:
        from taskvpc.control.ec2 import instances_state

        if self.leadership is not None and not self.leadership.leads(LEAD):
            return  # another control plane's supervisor has the instances
        docs = instances_state.all_instances(self.context(self.launch.region))
        region_of = {doc["InstanceId"]: doc.get("_Region", self.launch.region) for doc in docs}
        live = {iid for iid, process in self.agents.items() if process.poll() is None}
        now = time.monotonic()
        present = hosts_present(self.launch.prefix)
        self.seen |= present
        steps = plan(docs, present, live, self.missing_since, now, self.loss_window, self.seen)
        self.missing_since = {iid: self.missing_since.get(iid, now) for iid in steps.missing}
        for iid in steps.lost:
            self.lose(iid, region_of[iid])
        for doc in steps.ensure:
            if self._stopping.is_set():
                return
            if doc["State"]["Name"] == "running" and doc["InstanceId"] not in present:
                log.info("instance %s: host not on this machine: booting it again", doc["InstanceId"])
            self.ensure_host(doc)
            self.seen.add(doc["InstanceId"])
        for iid in steps.started:
            instances_state.host_started(self.context(region_of[iid]), iid)
        for iid in [*steps.remove, *steps.strays]:
            self.remove(iid)
        for iid, after in steps.finish:
            (instances_state.host_terminated if after == "terminated" else instances_state.host_stopped)(
                self.context(region_of[iid]), iid
            )

    def ensure_host(self, doc: Doc) -> None:
        iid = doc["InstanceId"]
        ensure_namespace(self.launch.prefix, doc, underlay_address(self.launch.state_dir, iid))
        cgroup = ensure_cgroup(self.launch.prefix, doc)
        if iid not in self.relays:
            namespace = NETNS_DIR / netns_name(self.launch.prefix, iid)
            listener = listen_in(namespace, self.launch.port)
            self.relays[iid] = Relay(listener, (self.launch.target_host, self.launch.port))
        process = self.agents.get(iid)
        if process is None or process.poll() is not None:
            self.agents[iid] = start_agent(self.launch, doc, cgroup)
            log.info("instance %s: agent pid %s", iid, self.agents[iid].pid)

    def lose(self, iid: str, region: str) -> None:
        """A host gone for good: tell the control plane first (replacements start elsewhere at once),
        then remove what is left of it here."""
        log.warning("instance %s: host lost (namespace gone for %.1f s)", iid, self.loss_window)
        process = self.agents.pop(iid, None)
        if process is not None and process.poll() is None:
            process.kill()  # ours, by PID: an agent left in a host that no longer exists
            process.wait(timeout=10)
        from taskvpc.control.ec2 import instances_state

        instances_state.host_lost(self.context(region), iid)
        self.missing_since.pop(iid, None)
        self.seen.discard(iid)
        self.remove(iid)

    def remove(self, iid: str) -> None:
        process = self.agents.pop(iid, None)
        if process is not None:
            stop_agent(process)
        relay = self.relays.pop(iid, None)
        if relay is not None:
            relay.close()
        for problem in remove_host(self.launch.prefix, self.launch.state_dir, iid):
            log.warning("instance %s: not removed: %s", iid, problem)
        cgroups.remove(
            cgroup_path(self.launch.prefix)
        )  # the parent goes with the last instance (busy: stays)
        if (
            not hosts_present(self.launch.prefix)
            and not (NETNS_DIR / local_underlay_netns(self.launch.prefix)).exists()
        ):
            _run("ip", "link", "del", underlay_bridge(self.launch.prefix))  # with the last host on it

    def stop(self) -> None:
        """Stop every agent (the hosts stay for the next ``up``); idempotent."""
        self._stopping.set()
        self._thread.join(timeout=30)
        if self.leadership is not None:
            self.leadership.release()
        for process in self.agents.values():
            stop_agent(process)
        for relay in self.relays.values():
            relay.close()
        self.agents.clear()
        self.relays.clear()
