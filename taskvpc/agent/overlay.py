"""VPC subnets across hosts over VXLAN: the answer's ``overlay`` section -> each router's VXLAN device.

How a packet goes from task A on host 1 to task B on host 2 (same VPC, any subnet of it):

    task A --veth--> router 1 (``P-r-<vpc>``)  route B/32 dev ``P-vx``, neighbour B -> vtep_mac(host 2)
                     ``P-vx`` (VNI of the VPC)  FDB vtep_mac(host 2) -> dst <host 2 underlay>
    host 1 namespace: UDP 4789 from <host 1 underlay> to <host 2 underlay>
    host 2 namespace: the underlay guard (``inet <P>_overlay``) admits it only if host 2 was told that
                      host 1 owns the inner source in that VNI; the VXLAN socket decapsulates
    router 2: arrives on ``P-vx`` (inner destination MAC = router 2's own vtep_mac), routed by B/32 to
              B's port, where the forward chain applies B's ingress rules (A's address is in the sets
              of A's groups on host 2 too); A's egress rules were applied on host 1.

Proxy ARP on the task ports answers a task asking for a remote address of its subnet (the router has a
route for it elsewhere), as it does for local ones; nothing ARPs across the overlay (permanent
neighbours, no flooding, no learning). The router's strict reverse-path filter drops a packet from the
overlay with a source routed elsewhere (a local task's, an unused address); the underlay guard drops
one whose source belongs to another host, so no host can speak for another's tasks.

MTU: the VXLAN device gets the underlay device's MTU minus 50 (the router's MTU is lowered, the
tasks' stay 1500): a task sending more to a remote address is told so by the router (ICMP
fragmentation needed, related to its flow, so the forward chain passes it) and PMTU discovery does
the rest. ``taskvpc up`` gives its instances' underlay 1550, so nothing is lowered there.

The planning (:func:`entries`, :func:`batch_lines`, :func:`guard_text`) is pure; :class:`Overlay` runs
it on the data plane's thread (:meth:`DataPlane.call`), so router namespaces do not come and go under
it, and the firewall hears the members first (rules before routes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from taskvpc.agent import netplan
from taskvpc.agent.drivers.vxlan import SeenOverlay, VxlanDriver
from taskvpc.agent.kvlog import kv
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.overlay import OVERLAY, VXLAN_OVERHEAD, VXLAN_PORT, OverlayVpc, vtep_mac
from taskvpc.netmodel.firewall_ir import RemotePeer

log = logging.getLogger(__name__)
DEFAULT_UNDERLAY_MTU = 1500
REPAIR_SECONDS = 30.0  # a pass with nothing new still looks at the host this often


def device_name(cfg: netplan.NetConfig) -> str:
    return cfg.prefix + "-vx"


def guard_table(cfg: netplan.NetConfig) -> str:
    return cfg.prefix + "_overlay"


# -- pure planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entries:
    """What a router's VXLAN device must route: member /32s, their neighbours, the hosts' FDB entries."""

    routes: frozenset[str]
    neighbours: dict[str, str]  # ip -> MAC
    fdb: dict[str, str]  # MAC -> underlay address


def entries(vpc: OverlayVpc, local_underlay: str, local_ips: Iterable[str] = ()) -> Entries:
    """A VPC's members behind the overlay (never this host's own, nor an address a local task holds)."""
    skip = set(local_ips)
    members = [m for m in vpc.members if m.host != local_underlay and m.ip not in skip]
    return Entries(
        frozenset(m.ip for m in members),
        {m.ip: vtep_mac(m.host) for m in members},
        {vtep_mac(h): h for h in sorted({m.host for m in members})},
    )


def batch_lines(device: str, want: Entries, seen: SeenOverlay) -> tuple[list[str], list[str]]:
    """(``ip -batch`` lines, ``bridge -batch`` lines) turning what is seen into what is wanted."""
    ip_lines = [f"route replace {ip}/32 dev {device}" for ip in sorted(want.routes - seen.routes)]
    ip_lines += [
        f"neigh replace {ip} lladdr {mac} dev {device} nud permanent"
        for ip, mac in sorted(want.neighbours.items())
        if seen.neighbours.get(ip) != mac
    ]
    ip_lines += [f"route del {ip}/32 dev {device}" for ip in sorted(seen.routes - want.routes)]
    ip_lines += [f"neigh del {ip} dev {device}" for ip in sorted(set(seen.neighbours) - set(want.neighbours))]
    fdb = [
        f"fdb replace {mac} dev {device} dst {host} self permanent"
        for mac, host in sorted(want.fdb.items())
        if seen.fdb.get(mac) != host
    ]
    fdb += [f"fdb del {mac} dev {device} self" for mac in sorted(set(seen.fdb) - set(want.fdb))]
    return ip_lines, fdb


def device_matches(seen: SeenOverlay, vni: int, local: str, mtu: int) -> bool:
    d = seen.device
    return (
        d is not None
        and d.vni == vni
        and d.local == local
        and d.mac == vtep_mac(local)
        and d.mtu == mtu
        and d.up
        and not d.learning
    )


def _hex(ip: str) -> str:
    return "0x" + "".join(f"{int(part):02x}" for part in ip.split("."))


def guard_text(table: str, vpcs: Iterable[OverlayVpc], local_underlay: str) -> str:
    """The underlay guard: per (sending host, VNI), the inner IPv4 sources that host owns.

    Offsets from the UDP header (``@th``, bits): VNI at 96 (24 bits), the inner EtherType at 224 (16),
    the inner IPv4 source at 336 (32). Rendered whole and swapped atomically (delete and add in one
    transaction)."""
    rules = []
    for vpc in sorted(vpcs, key=lambda v: v.vni):
        owned: dict[str, list[str]] = {}
        for m in vpc.members:
            if m.host != local_underlay:
                owned.setdefault(m.host, []).append(m.ip)
        for host, ips in sorted(owned.items()):
            sources = ", ".join(_hex(ip) for ip in sorted(set(ips)))
            rules.append(
                f"    udp dport {VXLAN_PORT} ip saddr {host} @th,96,24 {vpc.vni} @th,224,16 0x0800 "
                f"@th,336,32 {{ {sources} }} accept"
            )
    body = "\n".join([*rules, f"    udp dport {VXLAN_PORT} drop"])
    return (
        f"table inet {table} {{}}\ndelete table inet {table}\n"
        f"table inet {table} {{\n  chain underlay {{\n"
        f"    type filter hook prerouting priority raw; policy accept;\n{body}\n  }}\n}}\n"
    )


# -- the runner ------------------------------------------------------------------------------------


class Overlay:
    """Keeps every router's VXLAN device, the firewall's remote members and the underlay guard in step
    with the latest answer; see the module docstring."""

    def __init__(
        self,
        network: object,  # DataPlane (only .call and .known are used)
        cfg: netplan.NetConfig,
        underlay: str,
        firewall: FirewallSync | None,
        driver: VxlanDriver | None = None,
    ) -> None:
        self.network = network
        self.cfg = cfg
        self.underlay = underlay
        self.firewall = firewall
        self.driver = driver or VxlanDriver(cfg.netns_dir)
        self.wanted: dict[str, OverlayVpc] = {}
        self._applied_firewall: dict[str, tuple[RemotePeer, ...]] = {}
        self._applied_guard: str | None = None
        # vpc -> (router namespace inode, what was made, the local addresses then)
        self._done: dict[str, tuple[int, OverlayVpc, frozenset[str]]] = {}
        self._wake = asyncio.Event()
        self.passes = 0

    def submit(self, state: DesiredState) -> None:
        wanted = {v.vpc_id: v for v in state[OVERLAY]}
        if wanted != self.wanted:
            self.wanted = wanted
            self._wake.set()

    async def run(self, interval: float = 1.0) -> None:
        """Reconcile on every new answer, and each ``interval`` when a router appeared or went."""
        waited = 0.0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                waited += interval
            self._wake.clear()
            force = waited >= REPAIR_SECONDS
            if force:
                waited = 0.0
            try:
                await self.network.call(self.reconcile, force)  # type: ignore[attr-defined]
            except Exception as exc:  # the next pass tries again
                log.error("overlay reconcile failed %s", kv(error=repr(exc)))
                self._done.clear()

    def _local_ips(self, vpc_id: str) -> frozenset[str]:
        known: netplan.ObservedNetwork | None = getattr(self.network, "known", None)
        if known is None:
            return frozenset()
        return frozenset(
            addr.partition("/")[0] for t in known.tasks.values() if t.vpc_id == vpc_id for addr in t.addrs
        )

    def reconcile(self, force: bool = False) -> None:
        """On the data plane's thread: firewall members, then each existing router's device, then the
        guard. Routers that do not exist yet are done when they appear."""
        self.passes += 1
        device = device_name(self.cfg)
        mtu: int | None = None  # looked up once a router needs work (most passes have none)
        for vpc_id in sorted(set(self._applied_firewall) | set(self.wanted)):
            vpc = self.wanted.get(vpc_id)
            peers = (
                tuple(RemotePeer(m.ip, m.group_ids) for m in vpc.members if m.host != self.underlay)
                if vpc
                else ()
            )
            if self.firewall is not None and self._applied_firewall.get(vpc_id) != peers:
                self.firewall.set_overlay(vpc_id, device if vpc else None, peers)
            if vpc is None:
                self._applied_firewall.pop(vpc_id, None)
            else:
                self._applied_firewall[vpc_id] = peers
        for vpc_id in sorted(set(self._done) | set(self.wanted)):
            try:
                router = netplan.router_netns(self.cfg, vpc_id)
            except ValueError:  # not a VPC id: no router can be named after it
                continue
            vpc = self.wanted.get(vpc_id)
            router_id = self.driver.router_id(router)
            if router_id is None:
                self._done.pop(vpc_id, None)
                continue
            if vpc is None:
                self.driver.remove_device(router, device)
                self._done.pop(vpc_id, None)
                continue
            # only local addresses that a member also claims matter (entries() skips those): a task
            # starting here changes nothing for the device unless it holds a remote member's address
            local = self._local_ips(vpc_id) & {m.ip for m in vpc.members}
            if not force and self._done.get(vpc_id) == (router_id, vpc, local):
                continue
            if mtu is None:
                mtu = (self.driver.underlay_mtu(self.underlay) or DEFAULT_UNDERLAY_MTU) - VXLAN_OVERHEAD
            self._ensure_router(router, device, vpc, mtu, local)
            self._done[vpc_id] = (router_id, vpc, local)
        guard = guard_text(guard_table(self.cfg), self.wanted.values(), self.underlay)
        if guard != self._applied_guard:
            self.driver.load_guard(guard)
            self._applied_guard = guard

    def _ensure_router(
        self, router: str, device: str, vpc: OverlayVpc, mtu: int, local: frozenset[str]
    ) -> None:
        seen = self.driver.observe(router, device)
        if not device_matches(seen, vpc.vni, self.underlay, mtu):
            self.driver.create_device(
                router, device, vpc.vni, self.underlay, vtep_mac(self.underlay), mtu, VXLAN_PORT
            )
            seen = SeenOverlay(None)
        ip_lines, fdb_lines = batch_lines(device, entries(vpc, self.underlay, local), seen)
        self.driver.batch(router, ip_lines, fdb_lines)
        log.info("overlay %s", kv(vpc_id=vpc.vpc_id, vni=vpc.vni, members=len(vpc.members), mtu=mtu))

    def close(self) -> None:
        """Nothing to undo: the devices go with their routers, the guard with ``taskvpc down`` or the
        instance's namespace."""
