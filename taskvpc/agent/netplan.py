"""The task data plane as data: names, desired and observed state, and a pure planner.

Topology (one host; ``P`` is the configured prefix, ``tvpc`` by default):

    host (root) namespace                 router namespace ``P-r-<vpc hex>``         task namespace ``P-t-<task key>``
    ---------------------                 ------------------------------------        ------------------------------
    ``Ph<vpc hex>`` 169.254.100.1/32  <->  ``P-host`` 169.254.100.2/32                ``eth0`` = the ENI: its MAC,
      routes: <host cidrs> via              lo: each subnet's router ``.1``/32          ip/prefix, default via ``.1``
      169.254.100.2 onlink src .1           ``unreachable <subnet cidr>``               ``lo``
                                            ``P<eni hex>`` (one per ENI)  <-- veth -->  ``eth0``
                                            route ``<task ip>/32 dev P<eni hex>``
                                            proxy_arp=1, proxy_delay=0, rp_filter=1, ip_forward=1

* Routed, one veth per ENI, no bridge: every packet between two tasks, or between the host and a task,
  is *forwarded* by the VPC's router namespace, so an ``inet`` table's ``forward`` hook there sees it
  with connection tracking (this kernel has no bridge-family conntrack). The task end keeps EC2's view:
  ``eth0`` with the subnet prefix and a connected route; the router end answers ARP for every other
  address of the subnet by proxy ARP (``proxy_delay=0``, or Linux would delay each answer up to 0.8 s),
  and for ``.1`` itself because it is a local address of the router.
* Router addresses are /32s on the router's ``lo`` (this kernel has no ``dummy`` links): a /32 keeps the
  rest of the subnet non-local, and ``unreachable <subnet cidr>`` makes an address with no task fail
  fast (ICMP unreachable, no proxy-ARP answer) instead of black-holing. Each subnet's router address
  (its ``gateway``) is what the control plane sends (``taskvpc.agentapi.network.subnet_gateway``); the
  agent never derives it from the CIDR.
* Strict reverse-path filtering in the router drops any packet whose source does not route back through
  the port it came in on: a task cannot send with another task's (or an unused) address.
* Host access: one veth per VPC between the host and the router. Both ends use the *same* link-local
  pair in every VPC (host 169.254.100.1, router 169.254.100.2, /32 with on-link routes), so there is
  nothing to allocate or remember, and every VPC sees the host's traffic coming from one address,
  169.254.100.1: the source security groups see for the host (an "outside" address, in no VPC).
  The host gets routes only for the CIDRs the agent asks for (the VPC's subnets), never overlapping a
  network of a non-taskvpc interface, nor another VPC's access routes.

Names: namespaces carry the full id (no length limit); link names are at most 15 bytes: the prefix (at
most 7 characters) plus as many trailing hex digits of the ENI or VPC id as fit. The router end of an
ENI carries the ENI id as its ``ifalias``; the host end of an access link carries the VPC id.

Everything here is pure: no I/O, no netlink. ``drivers/netlink.py`` observes and changes the host;
``dataplane.py`` is the one reconciler that plans with :func:`plan` and applies through a driver.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from taskvpc.agentapi.network import Eni, Subnet

IFNAMSIZ = 15
TASK_ENDPOINT_IP = "169.254.170.2"  # on every router's lo: the agent's task endpoints (agent/taskmeta.py)
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{1,6}")
_VPC_RE = re.compile(r"vpc-([0-9a-f]{8}|[0-9a-f]{17})")
_ENI_RE = re.compile(r"eni-([0-9a-f]{8}|[0-9a-f]{17})")
_TASK_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_LB_ID_RE = re.compile(r"[0-9a-f]{16}")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


@dataclass(frozen=True)
class NetConfig:
    """Where and under which names the data plane lives on this host."""

    prefix: str = "tvpc"
    netns_dir: str = "/run/netns"
    host_link_addr: str = "169.254.100.1"  # the host's address on every access link (SG source for the host)
    router_link_addr: str = "169.254.100.2"  # the router's address on every access link (host's gateway)

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(f"prefix must be 2-7 characters [a-z][a-z0-9]*, got {self.prefix!r}")
        for addr in (self.host_link_addr, self.router_link_addr):
            if not ipaddress.IPv4Address(addr).is_link_local:
                raise ValueError(f"access link address {addr} is not in 169.254.0.0/16")
        if self.host_link_addr == self.router_link_addr:
            raise ValueError("host and router access link addresses must differ")


# -- names -------------------------------------------------------------------------------------------


def vpc_hex(vpc_id: str) -> str:
    m = _VPC_RE.fullmatch(vpc_id)
    if m is None:
        raise ValueError(f"not a VPC id: {vpc_id!r}")
    return m.group(1)


def eni_hex(eni_id: str) -> str:
    m = _ENI_RE.fullmatch(eni_id)
    if m is None:
        raise ValueError(f"not an ENI id: {eni_id!r}")
    return m.group(1)


def check_task_key(task_key: str) -> str:
    if not _TASK_KEY_RE.fullmatch(task_key):
        raise ValueError(f"task key must match {_TASK_KEY_RE.pattern}, got {task_key!r}")
    return task_key


def router_netns(cfg: NetConfig, vpc_id: str) -> str:
    return f"{cfg.prefix}-r-{vpc_hex(vpc_id)}"


def task_netns(cfg: NetConfig, task_key: str) -> str:
    return f"{cfg.prefix}-t-{check_task_key(task_key)}"


def eni_port(cfg: NetConfig, eni_id: str) -> str:
    """The router-side end of the ENI's veth, in the router namespace (what SG rules match as iif/oif)."""
    return cfg.prefix + eni_hex(eni_id)[-(IFNAMSIZ - len(cfg.prefix)) :]


def host_link(cfg: NetConfig, vpc_id: str) -> str:
    """The host end of the VPC's access veth, in the host namespace."""
    return cfg.prefix + "h" + vpc_hex(vpc_id)[-(IFNAMSIZ - 1 - len(cfg.prefix)) :]


def router_access_port(cfg: NetConfig) -> str:
    """The router end of the access veth (one per router namespace)."""
    return cfg.prefix + "-host"


def host_link_re(cfg: NetConfig) -> re.Pattern[str]:
    return re.compile(re.escape(cfg.prefix) + r"h[0-9a-f]{1,14}")


def eni_port_re(cfg: NetConfig) -> re.Pattern[str]:
    return re.compile(re.escape(cfg.prefix) + r"[0-9a-f]{1,13}")


def parse_netns(cfg: NetConfig, name: str) -> tuple[str, str] | None:
    """``("router", vpc_id)``, ``("task", task_key)``, ``("bridged", …)``, ``("loadbalancer", lb id)``,
    ``("stray", name)`` for our prefix, else None."""
    head = cfg.prefix + "-"
    if not name.startswith(head):
        return None
    rest = name[len(head) :]
    if rest.startswith("r-") and _VPC_RE.fullmatch("vpc-" + rest[2:]):
        return ("router", "vpc-" + rest[2:])
    if rest.startswith("t-") and _TASK_KEY_RE.fullmatch(rest[2:]):
        return ("task", rest[2:])
    if rest.startswith("b-") and _TASK_KEY_RE.fullmatch(rest[2:]):
        return ("bridged", rest[2:])  # a bridge/none task's namespace (drivers/bridge.py), not ours
    if rest.startswith("l-") and _LB_ID_RE.fullmatch(rest[2:]):
        return ("loadbalancer", rest[2:])  # a load balancer's namespace (agent/loadbalancers.py), not ours
    return ("stray", name)


def _norm_cidr(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr))


# -- desired -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEni:
    """A task's ENI as the data plane needs it; ``task_key`` names the task's namespace."""

    eni_id: str
    mac: str
    ip: str
    prefix_len: int
    gateway: str
    task_key: str

    def __post_init__(self) -> None:
        eni_hex(self.eni_id)
        check_task_key(self.task_key)
        if not _MAC_RE.fullmatch(self.mac):
            raise ValueError(f"MAC must be lower-case aa:bb:cc:dd:ee:ff, got {self.mac!r}")
        if int(self.mac[:2], 16) & 1:
            raise ValueError(f"MAC {self.mac} is a multicast address")
        iface = ipaddress.IPv4Interface(f"{self.ip}/{self.prefix_len}")
        if ipaddress.IPv4Address(self.gateway) not in iface.network:
            raise ValueError(f"gateway {self.gateway} is outside {iface.network}")
        if iface.ip == ipaddress.IPv4Address(self.gateway):
            raise ValueError("the task's address cannot be its gateway")

    @classmethod
    def of(cls, task_key: str, eni: Eni) -> TaskEni:
        """The one place the agent API's ENI becomes the data plane's (checked) one."""
        return cls(
            eni_id=eni.network_interface_id,
            mac=eni.mac,
            ip=eni.private_ipv4_address,
            prefix_len=eni.prefix_length,
            gateway=eni.gateway,
            task_key=task_key,
        )

    @functools.cached_property
    def cidr(self) -> str:  # (cached: every reconcile asks it of every task)
        return str(ipaddress.IPv4Interface(f"{self.ip}/{self.prefix_len}").network)

    @property
    def address(self) -> str:
        return f"{self.ip}/{self.prefix_len}"


@dataclass(frozen=True)
class DesiredVpc:
    vpc_id: str
    subnets: tuple[Subnet, ...]  # each with the gateway the control plane sent
    host_cidrs: tuple[str, ...] = ()  # routed from the host through the access link; () = no access

    def __post_init__(self) -> None:
        vpc_hex(self.vpc_id)
        for subnet in self.subnets:
            net = ipaddress.IPv4Network(subnet.cidr_block)
            if net.prefixlen > 28:
                raise ValueError(f"subnet {subnet.cidr_block} is smaller than a VPC allows (/28)")
            gateway = ipaddress.IPv4Address(subnet.gateway)
            if gateway not in net or gateway in (net.network_address, net.broadcast_address):
                raise ValueError(f"gateway {subnet.gateway} is not a host of {subnet.cidr_block}")
        for cidr in self.host_cidrs:
            ipaddress.IPv4Network(cidr)

    @property
    def router_addrs(self) -> frozenset[str]:
        return frozenset(s.gateway for s in self.subnets)

    @property
    def subnet_cidrs(self) -> frozenset[str]:
        return frozenset(_norm_cidr(s.cidr_block) for s in self.subnets)

    def gateway_of(self, cidr: str) -> str | None:
        return self._gateways.get(cidr)

    @functools.cached_property
    def _gateways(self) -> dict[str, str]:
        """Normalised subnet CIDR -> gateway, the first subnet's where two name one CIDR."""
        found: dict[str, str] = {}
        for s in self.subnets:
            found.setdefault(_norm_cidr(s.cidr_block), s.gateway)
        return found


@dataclass(frozen=True)
class DesiredTask:
    vpc_id: str
    eni: TaskEni


@dataclass(frozen=True)
class DesiredNetwork:
    """What the host should carry. ``keep``: task namespaces found on the host that are neither wanted
    nor to be removed yet (a task whose containers are still being stopped); their routers stay too.
    ``keep_vpcs``: routers (and access links) left as they are if present, but not made (a VPC of the
    instance with no task on this host right now)."""

    vpcs: tuple[DesiredVpc, ...] = ()
    tasks: tuple[DesiredTask, ...] = ()
    keep: frozenset[str] = frozenset()
    keep_vpcs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        vpcs = {v.vpc_id: v for v in self.vpcs}
        if len(vpcs) != len(self.vpcs):
            raise ValueError("a VPC is listed twice")
        keys: set[str] = set()
        for t in self.tasks:
            vpc = vpcs.get(t.vpc_id)
            if vpc is None:
                raise ValueError(f"task {t.eni.task_key} is in {t.vpc_id}, which is not desired")
            if t.eni.task_key in keys:
                raise ValueError(f"task {t.eni.task_key} is listed twice")
            keys.add(t.eni.task_key)
            if vpc.gateway_of(t.eni.cidr) != t.eni.gateway:
                raise ValueError(
                    f"ENI {t.eni.eni_id} ({t.eni.address} via {t.eni.gateway}) fits no subnet of {t.vpc_id}"
                )


# -- observed ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedPort:
    """The router end of an ENI's veth."""

    ifname: str
    index: int
    eni_id: str | None  # from its ifalias
    up: bool
    routes: frozenset[str]  # task addresses with a /32 route through this port


@dataclass(frozen=True)
class ObservedRouter:
    vpc_id: str
    netns: str
    forwarding: bool
    router_addrs: frozenset[str]
    unreachable: frozenset[str]
    ports: Mapping[str, ObservedPort] = field(default_factory=dict)
    access_ok: bool = False  # P-host is up with the router link address and the route back to the host


@dataclass(frozen=True)
class ObservedTask:
    task_key: str
    netns: str
    mac: str | None = None
    addrs: frozenset[str] = frozenset()
    gateway: str | None = None
    up: bool = False  # eth0 and lo up
    peer_index: int | None = None  # ifindex of eth0's peer (in the router namespace)
    vpc_id: str | None = None  # the router whose port is eth0's peer and routes its address
    port: str | None = None


@dataclass(frozen=True)
class ObservedHostAccess:
    vpc_id: str
    ifname: str
    up: bool
    has_addr: bool
    routes: frozenset[str]


@dataclass(frozen=True)
class Stray:
    """Something with our prefix that no desired state can explain: a namespace or a host link."""

    kind: str  # "netns" | "link"
    name: str


@dataclass(frozen=True)
class ObservedNetwork:
    routers: Mapping[str, ObservedRouter] = field(default_factory=dict)
    tasks: Mapping[str, ObservedTask] = field(default_factory=dict)
    host_access: Mapping[str, ObservedHostAccess] = field(default_factory=dict)
    strays: tuple[Stray, ...] = ()
    # a port index no router port is above (None: not known without a scan of every port). What the
    # host holds once a network is made gets the next one (any unused index would do: a task's network
    # matches when its port's index is its peer's); ``assume`` and ``assume_all`` carry it over.
    top_index: int | None = field(default=None, compare=False)


# -- actions -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureVpcRouter:
    vpc_id: str
    subnets: tuple[Subnet, ...]


class HostAccessConflict(Exception):
    """Host access would collide with something else in the agent's namespace (another taskvpc's link,
    a route of the host): the message names it. The data plane then runs without host access."""


@dataclass(frozen=True)
class EnsureHostAccess:
    vpc_id: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class EnsureTaskNetwork:
    vpc_id: str
    eni: TaskEni


@dataclass(frozen=True)
class RemoveTaskNetwork:
    task_key: str
    vpc_id: str | None = None  # with port and ip: also drop the router's /32 route at once
    port: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class RemoveHostAccess:
    vpc_id: str


@dataclass(frozen=True)
class RemoveVpcRouter:
    vpc_id: str


@dataclass(frozen=True)
class RemoveStray:
    stray: Stray


Action = (
    EnsureVpcRouter
    | EnsureHostAccess
    | EnsureTaskNetwork
    | RemoveTaskNetwork
    | RemoveHostAccess
    | RemoveVpcRouter
    | RemoveStray
)


# -- planner -----------------------------------------------------------------------------------------


def router_matches(vpc: DesiredVpc, seen: ObservedRouter | None) -> bool:
    return (
        seen is not None
        and seen.forwarding
        and seen.router_addrs == vpc.router_addrs
        and seen.unreachable == vpc.subnet_cidrs
    )


def host_access_matches(
    vpc: DesiredVpc, seen: ObservedHostAccess | None, router: ObservedRouter | None
) -> bool:
    return (
        seen is not None
        and router is not None
        and router.access_ok
        and seen.up
        and seen.has_addr
        and seen.routes == frozenset(_norm_cidr(c) for c in vpc.host_cidrs)
    )


def task_matches(
    cfg: NetConfig, task: DesiredTask, seen: ObservedTask | None, router: ObservedRouter | None
) -> bool:
    if seen is None or router is None or seen.vpc_id != task.vpc_id:
        return False
    eni = task.eni
    port = router.ports.get(eni_port(cfg, eni.eni_id))
    return (
        seen.up
        and seen.mac == eni.mac
        and seen.addrs == frozenset({eni.address})
        and seen.gateway == eni.gateway
        and port is not None
        and port.up
        and port.eni_id == eni.eni_id
        and eni.ip in port.routes
        and port.index == seen.peer_index
    )


def plan(
    cfg: NetConfig,
    desired: DesiredNetwork,
    observed: ObservedNetwork,
    only: Collection[str] | None = None,
) -> list[Action]:
    """What to do so that the host carries exactly ``desired``: adopt what matches, fix, remove the rest.

    Order: undesired tasks and strays go first (their addresses may be reused), then routers, host access
    and tasks are ensured, and undesired access links and routers go last (after their tasks). Tasks in
    ``desired.keep`` and their routers are left as they are.

    ``only``: the task keys to plan for (the tasks whose wish changed since a plan that was carried out);
    every other task is taken to be as wanted, and ``desired.tasks`` need hold only these. The plan is then
    the full plan's actions for those tasks, and every router, access link and stray action, in time
    proportional to ``only`` and the VPCs rather than to every task of the host (a task start or stop on a
    host of thousands planned them all).
    """
    actions: list[Action] = []
    want_vpcs = {v.vpc_id: v for v in desired.vpcs}
    want_tasks = {t.eni.task_key: t for t in desired.tasks}
    if only is not None:
        want_tasks = {k: t for k, t in want_tasks.items() if k in only}

    kept_vpcs = {observed.tasks[k].vpc_id for k in desired.keep if k in observed.tasks} | desired.keep_vpcs
    seen_keys = sorted(observed.tasks) if only is None else sorted(k for k in only if k in observed.tasks)
    for key in seen_keys:
        seen = observed.tasks[key]
        wanted = want_tasks.get(key)
        if wanted is None and key in desired.keep:
            continue
        if wanted is None or (seen.vpc_id is not None and seen.vpc_id != wanted.vpc_id):
            actions.append(RemoveTaskNetwork(key, seen.vpc_id, seen.port, _ip_of(seen)))
    actions.extend(RemoveStray(s) for s in observed.strays)

    for vpc_id in sorted(want_vpcs):
        vpc = want_vpcs[vpc_id]
        if not router_matches(vpc, observed.routers.get(vpc_id)):
            actions.append(EnsureVpcRouter(vpc_id, vpc.subnets))
    for vpc_id in sorted(want_vpcs):
        vpc = want_vpcs[vpc_id]
        seen_access = observed.host_access.get(vpc_id)
        if vpc.host_cidrs:
            if not host_access_matches(vpc, seen_access, observed.routers.get(vpc_id)):
                actions.append(EnsureHostAccess(vpc_id, vpc.host_cidrs))
        elif seen_access is not None:
            actions.append(RemoveHostAccess(vpc_id))
    for key in sorted(want_tasks):
        task = want_tasks[key]
        if not task_matches(cfg, task, observed.tasks.get(key), observed.routers.get(task.vpc_id)):
            actions.append(EnsureTaskNetwork(task.vpc_id, task.eni))

    for vpc_id in sorted(observed.host_access):
        if vpc_id not in want_vpcs and vpc_id not in kept_vpcs:
            actions.append(RemoveHostAccess(vpc_id))
    for vpc_id in sorted(observed.routers):
        if vpc_id not in want_vpcs and vpc_id not in kept_vpcs:
            actions.append(RemoveVpcRouter(vpc_id))
    return actions


def _ip_of(seen: ObservedTask) -> str | None:
    if len(seen.addrs) != 1:
        return None
    return next(iter(seen.addrs)).partition("/")[0]


# -- apply -------------------------------------------------------------------------------------------


class NetworkDriver(Protocol):
    """What ``apply`` needs from a driver; ``drivers.netlink.NetlinkDriver`` is the real one."""

    def observe(self) -> ObservedNetwork: ...
    def ensure_vpc_router(self, vpc_id: str, subnets: Sequence[Subnet]) -> None: ...
    def remove_vpc_router(self, vpc_id: str) -> bool: ...
    def ensure_host_access(self, vpc_id: str, cidrs: Sequence[str]) -> None: ...
    def remove_host_access(self, vpc_id: str) -> bool: ...
    def ensure_task_network(self, vpc_id: str, eni: TaskEni) -> None: ...
    def remove_task_network(
        self, task_key: str, vpc_id: str | None = None, port: str | None = None, ip: str | None = None
    ) -> bool: ...
    def remove_stray(self, stray: Stray) -> bool: ...


@dataclass
class ApplyReport:
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, BaseException]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def run_action(action: Action, driver: NetworkDriver) -> None:
    match action:
        case EnsureVpcRouter(vpc_id, subnets):
            driver.ensure_vpc_router(vpc_id, subnets)
        case EnsureHostAccess(vpc_id, cidrs):
            driver.ensure_host_access(vpc_id, cidrs)
        case EnsureTaskNetwork(vpc_id, eni):
            driver.ensure_task_network(vpc_id, eni)
        case RemoveTaskNetwork(task_key, vpc_id, port, ip):
            driver.remove_task_network(task_key, vpc_id, port, ip)
        case RemoveHostAccess(vpc_id):
            driver.remove_host_access(vpc_id)
        case RemoveVpcRouter(vpc_id):
            driver.remove_vpc_router(vpc_id)
        case RemoveStray(stray):
            driver.remove_stray(stray)


Hook = Callable[[Action], None]


def apply(
    actions: Sequence[Action],
    driver: NetworkDriver,
    *,
    before: Hook | None = None,
    after: Hook | None = None,
) -> ApplyReport:
    """Carry out every action in order; an error is recorded and the next action still runs.

    ``before`` runs first (an error there skips the action: a task's rules are loaded before its veth
    exists, never after), ``after`` once it succeeded."""
    report = ApplyReport()
    for action in actions:
        try:
            if before is not None:
                before(action)
            run_action(action, driver)
            if after is not None:
                after(action)
        except Exception as exc:
            report.failed.append((action, exc))
        else:
            report.done.append(action)
    return report


# -- what the host looks like after a successful action ---------------------------------------------


def assume(cfg: NetConfig, observed: ObservedNetwork, action: Action) -> ObservedNetwork:
    """``observed`` as it is once ``action`` succeeded, so the next plan needs no new observation (the
    drivers are idempotent and make exactly what ``*_matches`` checks)."""
    routers, tasks = dict(observed.routers), dict(observed.tasks)
    access = dict(observed.host_access)
    strays = observed.strays
    top = observed.top_index
    match action:
        case EnsureVpcRouter(vpc_id, subnets):
            old = routers.get(vpc_id)
            routers[vpc_id] = ObservedRouter(
                vpc_id,
                router_netns(cfg, vpc_id),
                True,
                frozenset(s.gateway for s in subnets),
                frozenset(_norm_cidr(s.cidr_block) for s in subnets),
                old.ports if old else {},
                old.access_ok if old else False,
            )
        case EnsureHostAccess(vpc_id, cidrs):
            access[vpc_id] = ObservedHostAccess(
                vpc_id, host_link(cfg, vpc_id), True, True, frozenset(_norm_cidr(c) for c in cidrs)
            )
            if vpc_id in routers:
                routers[vpc_id] = replace(routers[vpc_id], access_ok=True)
        case EnsureTaskNetwork(vpc_id, eni):
            port = eni_port(cfg, eni.eni_id)
            if top is None:
                top = _highest_index(routers.values())
            index = top + 1
            if vpc_id in routers:
                ports = {n: p for n, p in routers[vpc_id].ports.items() if p.eni_id != eni.eni_id}
                ports[port] = ObservedPort(port, index, eni.eni_id, True, frozenset({eni.ip}))
                routers[vpc_id] = replace(routers[vpc_id], ports=ports)
                top = index
            tasks[eni.task_key] = _task_made(cfg, vpc_id, eni, index, port)
        case RemoveTaskNetwork(task_key):
            gone = tasks.pop(task_key, None)
            if gone is not None and gone.vpc_id in routers and gone.port is not None:
                router = routers[gone.vpc_id]
                routers[gone.vpc_id] = replace(
                    router, ports={n: p for n, p in router.ports.items() if n != gone.port}
                )
        case RemoveHostAccess(vpc_id):
            access.pop(vpc_id, None)
            if vpc_id in routers:
                routers[vpc_id] = replace(routers[vpc_id], access_ok=False)
        case RemoveVpcRouter(vpc_id):
            routers.pop(vpc_id, None)
            access.pop(vpc_id, None)  # its access veth goes with the namespace
        case RemoveStray(stray):
            strays = tuple(s for s in strays if s != stray)
    return ObservedNetwork(routers, tasks, access, strays, top)


def _highest_index(routers: Iterable[ObservedRouter]) -> int:
    return max((p.index for r in routers for p in r.ports.values()), default=1)


def _task_made(cfg: NetConfig, vpc_id: str, eni: TaskEni, index: int, port: str) -> ObservedTask:
    """What the host holds once ``EnsureTaskNetwork`` has made the task's network."""
    return ObservedTask(
        eni.task_key, task_netns(cfg, eni.task_key), eni.mac, frozenset({eni.address}), eni.gateway, True, index,
        vpc_id, port,
    )  # fmt: skip


def assume_all(cfg: NetConfig, observed: ObservedNetwork, actions: Sequence[Action]) -> ObservedNetwork:
    """:func:`assume` of each of ``actions`` in turn, with the maps copied once for the whole sequence
    rather than per action: a plan that removes hundreds of task networks on a host of thousands copied
    every task, and the router's every port, once per removal (O(actions x tasks) on the data-plane
    thread). Task networks are folded in place; any other action goes through :func:`assume`.

    A plan of one task costs the same on a host of thousands: no pass over every port (an index above
    every port's is carried over in ``top_index``; an ENI's old port is the one named after it, as the
    driver names them and refuses a port of that name with another owner), only C-level copies of the
    maps."""
    tasks = dict(observed.tasks)
    routers = dict(observed.routers)
    ports: dict[str, dict[str, ObservedPort]] = {}  # routers whose ports were changed here: own copies
    top = observed.top_index  # no port index is above it (None: not known without a scan)

    def flush() -> None:
        for vpc_id, own in ports.items():
            routers[vpc_id] = replace(routers[vpc_id], ports=own)
        ports.clear()

    def own_ports(vpc_id: str) -> dict[str, ObservedPort]:
        if vpc_id not in ports:
            ports[vpc_id] = dict(routers[vpc_id].ports)
        return ports[vpc_id]

    current = ObservedNetwork(routers, tasks, observed.host_access, observed.strays)
    for action in actions:
        match action:
            case EnsureTaskNetwork(vpc_id, eni):
                if top is None:
                    flush()
                    top = _highest_index(routers.values())
                index = top + 1
                port = eni_port(cfg, eni.eni_id)
                if vpc_id in routers:
                    own = own_ports(vpc_id)
                    own[port] = ObservedPort(port, index, eni.eni_id, True, frozenset({eni.ip}))
                    top = index  # now the highest
                tasks[eni.task_key] = _task_made(cfg, vpc_id, eni, index, port)
            case RemoveTaskNetwork(task_key):
                gone = tasks.pop(task_key, None)
                if gone is not None and gone.vpc_id in routers and gone.port is not None:
                    own_ports(gone.vpc_id).pop(gone.port, None)  # (``top`` stays above every index)
            case _:
                flush()
                current = assume(
                    cfg, ObservedNetwork(routers, tasks, current.host_access, current.strays, top), action
                )
                routers, tasks = dict(current.routers), dict(current.tasks)
                top = current.top_index
    flush()
    return ObservedNetwork(routers, tasks, current.host_access, current.strays, top)
