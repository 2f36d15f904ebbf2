"""The data-plane driver: VPC router namespaces, task ENIs and host access, over netlink in-process.

The topology and names are in ``taskvpc/agent/netplan.py``. Costs this driver is built around
(``shared/reference/measurements.md``): no ``ip`` process per step, no helper process per namespace
(``netns.py``), the ENI's veth made in one request with its task end born inside the task namespace
(moving a peer costs 14-22 ms), a handful of netlink round trips per task (``rtnl.py``, with batching),
and teardown by deleting the namespace only (the kernel frees the veth pair and every route through it
asynchronously, about 1 ms of our time instead of 30 ms for a synchronous veth delete).

Every ``ensure_*`` converges whatever it finds (creating, repairing, or doing nothing); every
``remove_*`` treats "already absent" as success and returns whether something was there.

One ``NetlinkDriver`` keeps an open handle (namespace fd, netlink socket, sysctl directory fd) per VPC
router and one for the host; task namespaces get a short-lived socket per call. Public methods hold a
lock, so a driver may be shared between threads, though calls are serialized.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT, ndmsg
from pyroute2.netlink.rtnl.rtmsg import (
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RTNH_F_ONLINK,
    rtmsg,
)

from taskvpc.agent import netplan
from taskvpc.agent.drivers import netns
from taskvpc.agent.drivers.rtnl import Msg, Rtnl, attr
from taskvpc.agent.netplan import (
    TASK_ENDPOINT_IP,
    NetConfig,
    ObservedHostAccess,
    ObservedNetwork,
    ObservedPort,
    ObservedRouter,
    ObservedTask,
    Stray,
    TaskEni,
)
from taskvpc.agentapi.network import Subnet

RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTPROT_STATIC = 4
RTN_UNICAST = 1
RTN_UNREACHABLE = 7
_ADDRESS_ROUTE_TYPES = (2, 3, 4, 5)  # local, broadcast, anycast, multicast
LO_INDEX = 1
_CREATE = NLM_F_CREATE | NLM_F_EXCL
_REPLACE = NLM_F_CREATE | NLM_F_REPLACE
_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)

_HAS_IPV6 = os.path.isdir("/proc/sys/net/ipv6")  # absent when the kernel runs with ipv6.disable=1

# Written inside a router namespace when it is made (and again by every ensure_vpc_router).
ROUTER_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    # Strict reverse-path check: a packet whose source does not route back out of the port it came in
    # on is dropped, so a task cannot use another task's address, or an unused one (EC2's source check).
    "net/ipv4/conf/all/rp_filter": "1",
    "net/ipv4/conf/default/rp_filter": "1",
    "net/ipv4/conf/default/proxy_arp": "1",
    "net/ipv4/conf/all/send_redirects": "0",
    "net/ipv4/conf/default/send_redirects": "0",
}
# Written inside a task namespace before eth0 exists: eth0 inherits "default"; lo keeps ::1.
TASK_SYSCTLS: dict[str, str] = {}
if _HAS_IPV6:
    # IPv4 only: no link-local IPv6 path between a task and the router that no rule would see.
    ROUTER_SYSCTLS |= {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"}
    TASK_SYSCTLS |= {"net/ipv6/conf/default/disable_ipv6": "1"}


class DataPlaneError(Exception):
    """The data plane cannot be brought to the requested state; the message says why."""


class RouterMissing(DataPlaneError):
    pass


class HostRouteConflict(DataPlaneError, netplan.HostAccessConflict):
    pass


class LinkConflict(DataPlaneError):
    pass


# -- message builders -------------------------------------------------------------------------------


def _owner(link: Msg) -> str:
    """An interface by name, with its alias (another taskvpc's host link carries its VPC id there)."""
    name, alias = attr(link, "IFLA_IFNAME", f"#{link['index']}"), attr(link, "IFLA_IFALIAS")
    return f"interface {name} ({alias})" if alias else f"interface {name}"


def _link_set(index: int, up: bool | None = None, attrs: Iterable[tuple[str, Any]] = ()) -> Msg:
    msg = ifinfmsg()
    msg["index"] = index
    if up is not None:
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
    msg["attrs"] = list(attrs)
    return msg


# A veth's queues only matter to XDP and threaded NAPI, which the data plane does not use; with the default
# (one per possible CPU) each end of a task's pair cost ~N sysfs queue directories and rx rings' state.
_ONE_QUEUE: tuple[tuple[str, int], ...] = (("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1))


def _veth(ifname: str, peer_name: str, peer_ns_fd: int, peer_mac: str | None = None) -> Msg:
    """One request: ``ifname`` up here, its peer ``peer_name`` created directly in ``peer_ns_fd``.

    The peer cannot be created up (the kernel opens it before the pair is linked: ENOTCONN). Each end
    gets one queue each way: a veth otherwise gets one per possible CPU, every queue with its sysfs
    directory and (rx) its NAPI/XDP state, for traffic that never spreads over them (``_ONE_QUEUE``).
    """
    peer_attrs: list[tuple[str, Any]] = [
        ("IFLA_IFNAME", peer_name),
        ("IFLA_NET_NS_FD", peer_ns_fd),
        *_ONE_QUEUE,
    ]
    if peer_mac is not None:
        peer_attrs.append(("IFLA_ADDRESS", peer_mac))
    msg = _link_set(0, up=True)
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        *_ONE_QUEUE,
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
                ]
            },
        ),
    ]
    return msg


def _addr(index: int, ip: str, prefix_len: int) -> Msg:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = prefix_len
    msg["index"] = index
    msg["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    return msg


def _neighbour(index: int, ip: str, mac: str) -> Msg:
    """A permanent neighbour: ``ip`` is at ``mac`` on link ``index``, never resolved by ARP.

    The kernel's neighbour table is shared by every namespace and capped by ``gc_thresh3`` (1,024 by
    default, a host-wide setting) -- counting only entries learnt by ARP. A router resolving each of
    thousands of tasks by ARP would overflow it (``neighbour table overflow``: new flows dropped); both
    ends of a task's veth know each other's MAC, so neither needs to ask.
    """
    msg = ndmsg()
    msg["family"] = socket.AF_INET
    msg["ifindex"] = index
    msg["state"] = NUD_PERMANENT
    msg["attrs"] = [("NDA_DST", ip), ("NDA_LLADDR", mac)]
    return msg


def _gateway_neighbour(eth0: int, gateway: str, port_mac: str | None) -> list[tuple[Msg, int, int]]:
    """The task's gateway at its router port's MAC (see ``_neighbour``), when that MAC is known."""
    return [(_neighbour(eth0, gateway, port_mac), RTM_NEWNEIGH, _REPLACE)] if port_mac else []


def _route(
    cidr: str,
    *,
    gateway: str | None = None,
    oif: int | None = None,
    rtype: int = RTN_UNICAST,
    onlink: bool = False,
    prefsrc: str | None = None,
) -> Msg:
    net = ipaddress.IPv4Network(cidr)
    msg = rtmsg()
    msg["family"] = socket.AF_INET
    msg["dst_len"] = net.prefixlen
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = RTPROT_STATIC
    msg["type"] = rtype
    msg["scope"] = RT_SCOPE_LINK if (oif is not None and gateway is None) else RT_SCOPE_UNIVERSE
    msg["flags"] = RTNH_F_ONLINK if onlink else 0
    attrs: list[tuple[str, Any]] = []
    if net.prefixlen:
        attrs.append(("RTA_DST", str(net.network_address)))
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    if prefsrc is not None:
        attrs.append(("RTA_PREFSRC", prefsrc))
    msg["attrs"] = attrs
    return msg


def _route_del(cidr: str, oif: int | None = None) -> Msg:
    """A delete matching the destination (and the device, when given), whatever its scope and type."""
    msg = _route(cidr, oif=oif)
    msg["scope"] = RT_SCOPE_NOWHERE
    msg["type"] = 0
    msg["proto"] = 0
    return msg


def _route_cidr(msg: Msg) -> str:
    return f"{attr(msg, 'RTA_DST', '0.0.0.0')}/{msg['dst_len']}"


def _is_up(link: Msg) -> bool:
    return bool(link["flags"] & IFF_UP)


def _quiet(call: Any, *args: Any) -> bool:
    """Run a delete; "already gone" is success. True when something was deleted."""
    try:
        call(*args)
    except NetlinkError as exc:
        if exc.code in _GONE:
            return False
        raise
    return True


# -- handles ----------------------------------------------------------------------------------------


@dataclass
class _Router:
    vpc_id: str
    name: str
    fd: int
    nl: Rtnl
    sysdir: int  # /proc/sys/net/ipv4 of the router namespace

    def close(self) -> None:
        self.nl.close()
        os.close(self.sysdir)
        os.close(self.fd)

    def alive(self, netns_dir: str) -> bool:
        """Still the namespace mounted under its name (not removed, nor replaced, behind our back)?"""
        try:
            st = os.stat(netns.path_of(self.name, netns_dir))
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


class NetlinkDriver:
    """The real ``netplan.NetworkDriver``. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)."""

    def __init__(self, cfg: NetConfig) -> None:
        self.cfg = cfg
        self._lock = threading.RLock()
        self._host: Rtnl | None = None
        self._routers: dict[str, _Router] = {}
        # task key -> (vpc id, router port, task address): lets remove_task_network drop the router's
        # /32 route at once even when the caller gives no hint.
        self._tasks: dict[str, tuple[str, str, str]] = {}

    def close(self) -> None:
        with self._lock:
            for router in self._routers.values():
                router.close()
            self._routers.clear()
            if self._host is not None:
                self._host.close()
                self._host = None

    def __enter__(self) -> NetlinkDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handles -----------------------------------------------------------------------------------

    def _host_nl(self) -> Rtnl:
        if self._host is None:
            self._host = Rtnl(
                socket.socket(
                    socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
                )
            )
        return self._host

    def _router(self, vpc_id: str, create: bool = False) -> _Router | None:
        router = self._routers.get(vpc_id)
        if router is not None:
            if router.alive(self.cfg.netns_dir):
                return router
            router.close()
            del self._routers[vpc_id]
        name = netplan.router_netns(self.cfg, vpc_id)
        fd = netns.open_ns(name, self.cfg.netns_dir)
        if fd is not None:
            sock = netns.netlink_socket_in(fd)
        elif create:
            fd, sock = netns.create(name, self.cfg.netns_dir, sysctls=ROUTER_SYSCTLS)
        else:
            return None
        router = _Router(vpc_id, name, fd, Rtnl(sock), netns.open_sysctl_dir(fd, "net/ipv4"))
        self._routers[vpc_id] = router
        return router

    def _require_router(self, vpc_id: str) -> _Router:
        router = self._router(vpc_id)
        if router is None:
            raise RouterMissing(f"no router namespace for {vpc_id}: ensure_vpc_router first")
        return router

    # -- VPC router --------------------------------------------------------------------------------

    def ensure_vpc_router(self, vpc_id: str, subnets: Sequence[Subnet]) -> None:
        """The router namespace of ``vpc_id`` with each subnet's gateway on lo; extra subnets are dropped."""
        want_addrs = {s.gateway for s in subnets} | {TASK_ENDPOINT_IP}  # the agent's endpoints (taskmeta)
        want_unreach = {str(ipaddress.IPv4Network(s.cidr_block)) for s in subnets}
        with self._lock:
            router = self._router(vpc_id, create=True)
            assert router is not None
            netns.write_sysctls(router.fd, ROUTER_SYSCTLS)
            nl = router.nl
            nl.request(_link_set(LO_INDEX, up=True), RTM_NEWLINK)
            have_addrs = {
                attr(a, "IFA_LOCAL"): a
                for a in nl.addrs()
                if a["index"] == LO_INDEX
                and a["prefixlen"] == 32
                and not attr(a, "IFA_LOCAL", "").startswith("127.")
            }
            have_unreach = {_route_cidr(r): r for r in nl.routes() if r["type"] == RTN_UNREACHABLE}
            batch = [
                (_addr(LO_INDEX, ip, 32), RTM_NEWADDR, _REPLACE)
                for ip in sorted(want_addrs - set(have_addrs))
            ]
            batch += [
                (_route(cidr, rtype=RTN_UNREACHABLE), RTM_NEWROUTE, _REPLACE)
                for cidr in sorted(want_unreach - set(have_unreach))
            ]
            batch += [
                (_addr(LO_INDEX, ip, 32), RTM_DELADDR, 0) for ip in sorted(set(have_addrs) - want_addrs)
            ]
            batch += [
                (_route_del(cidr), RTM_DELROUTE, 0) for cidr in sorted(set(have_unreach) - want_unreach)
            ]
            if batch:
                nl.batch(batch)

    def remove_vpc_router(self, vpc_id: str) -> bool:
        """Delete the router namespace: its ports, the access veth and the host's routes through it go too."""
        with self._lock:
            self._drop_host_routes(vpc_id)
            router = self._routers.pop(vpc_id, None)
            if router is not None:
                router.close()
            for key in [k for k, (v, _, _) in self._tasks.items() if v == vpc_id]:
                del self._tasks[key]
            return netns.remove(netplan.router_netns(self.cfg, vpc_id), self.cfg.netns_dir)

    # -- task network ------------------------------------------------------------------------------

    def ensure_task_network(self, vpc_id: str, eni: TaskEni) -> None:
        """The task's namespace with ``eth0`` = the ENI, wired to the VPC router; repairs what differs."""
        with self._lock:
            router = self._require_router(vpc_id)
            name = netplan.task_netns(self.cfg, eni.task_key)
            port = netplan.eni_port(self.cfg, eni.eni_id)
            fd = netns.open_ns(name, self.cfg.netns_dir)
            if fd is None:
                fd, sock = netns.create(name, self.cfg.netns_dir, sysctls=TASK_SYSCTLS)
                try:
                    with Rtnl(sock) as task:
                        self._create_task(router, task, fd, eni, port)
                except BaseException:
                    netns.remove(name, self.cfg.netns_dir)
                    raise
                finally:
                    os.close(fd)
            else:
                try:
                    with Rtnl(netns.netlink_socket_in(fd)) as task:
                        self._repair_task(router, task, fd, eni, port)
                finally:
                    os.close(fd)
            self._tasks[eni.task_key] = (vpc_id, port, eni.ip)

    def _make_veth(
        self, router: _Router, task_fd: int, eni: TaskEni, port: str
    ) -> tuple[int, int, str | None]:
        """Create the ENI's veth; return (router port index, eth0 index, router port MAC). Clears a stale
        port once."""
        for attempt in (1, 2):
            try:
                echoed = router.nl.request(
                    _veth(port, "eth0", task_fd, eni.mac), RTM_NEWLINK, _CREATE | NLM_F_ECHO
                )
                break
            except NetlinkError as exc:
                if exc.code != errno.EEXIST or attempt == 2:
                    raise
                self._clear_stale_port(router, port, eni)
        link = echoed[0]
        return link["index"], attr(link, "IFLA_LINK"), attr(link, "IFLA_ADDRESS")

    def _clear_stale_port(self, router: _Router, port: str, eni: TaskEni) -> None:
        """A port of this name exists: left from a namespace still being freed, or another ENI's."""
        link = router.nl.link(port)
        if link is None:
            return
        owner = attr(link, "IFLA_IFALIAS")
        if owner not in (None, eni.eni_id):
            raise LinkConflict(f"router port {port} already belongs to {owner} (ENI ids share a suffix)")
        _quiet(router.nl.request, _link_set(link["index"]), RTM_DELLINK)

    def _router_side(self, router: _Router, port_index: int, port: str, eni: TaskEni) -> None:
        router.nl.batch(
            [
                (_link_set(port_index, up=True, attrs=[("IFLA_IFALIAS", eni.eni_id)]), RTM_NEWLINK, 0),
                (_route(f"{eni.ip}/32", oif=port_index), RTM_NEWROUTE, _REPLACE),
                (_neighbour(port_index, eni.ip, eni.mac), RTM_NEWNEIGH, _REPLACE),
            ]
        )
        # Answer ARP for the rest of the subnet at once (Linux delays proxy answers up to 0.8 s).
        netns.write_at(router.sysdir, {f"neigh/{port}/proxy_delay": "0", f"conf/{port}/proxy_arp": "1"})

    def _create_task(self, router: _Router, task: Rtnl, task_fd: int, eni: TaskEni, port: str) -> None:
        port_index, eth0, port_mac = self._make_veth(router, task_fd, eni, port)
        task.batch(
            [
                (_link_set(LO_INDEX, up=True), RTM_NEWLINK, 0),
                (_link_set(eth0, up=True), RTM_NEWLINK, 0),
                (_addr(eth0, eni.ip, eni.prefix_len), RTM_NEWADDR, _REPLACE),
                (_route("0.0.0.0/0", gateway=eni.gateway, oif=eth0), RTM_NEWROUTE, _REPLACE),
                *_gateway_neighbour(eth0, eni.gateway, port_mac),
            ]
        )
        self._router_side(router, port_index, port, eni)

    def _repair_task(self, router: _Router, task: Rtnl, task_fd: int, eni: TaskEni, port: str) -> None:
        eth0 = task.link("eth0")
        plink = router.nl.link(port)
        if plink is not None and attr(plink, "IFLA_IFALIAS") not in (None, eni.eni_id):
            raise LinkConflict(f"router port {port} belongs to {attr(plink, 'IFLA_IFALIAS')}")
        paired = (
            eth0 is not None
            and plink is not None
            and attr(eth0, "IFLA_LINK") == plink["index"]
            and attr(plink, "IFLA_LINK") == eth0["index"]
        )
        if paired:
            assert eth0 is not None and plink is not None
            port_index, eth0_index = plink["index"], eth0["index"]
            port_mac = attr(plink, "IFLA_ADDRESS")
            if attr(eth0, "IFLA_ADDRESS") != eni.mac:
                task.request(_link_set(eth0_index, up=False), RTM_NEWLINK)
                task.request(_link_set(eth0_index, attrs=[("IFLA_ADDRESS", eni.mac)]), RTM_NEWLINK)
        else:
            # Half-made or mismatched: start the pair again (deleting a veth is slow, but rare here).
            if eth0 is not None:
                _quiet(task.request, _link_set(eth0["index"]), RTM_DELLINK)
            port_index, eth0_index, port_mac = self._make_veth(router, task_fd, eni, port)
        want = (eni.ip, eni.prefix_len)
        batch: list[tuple[Msg, int, int]] = [
            (_addr(eth0_index, a, plen), RTM_DELADDR, 0)
            for a, plen in (
                (attr(m, "IFA_LOCAL"), m["prefixlen"]) for m in task.addrs() if m["index"] == eth0_index
            )
            if (a, plen) != want
        ]
        batch += [
            (_link_set(LO_INDEX, up=True), RTM_NEWLINK, 0),
            (_link_set(eth0_index, up=True), RTM_NEWLINK, 0),
            (_addr(eth0_index, eni.ip, eni.prefix_len), RTM_NEWADDR, _REPLACE),
            (_route("0.0.0.0/0", gateway=eni.gateway, oif=eth0_index), RTM_NEWROUTE, _REPLACE),
            *_gateway_neighbour(eth0_index, eni.gateway, port_mac),
        ]
        task.batch(batch)
        self._router_side(router, port_index, port, eni)

    def remove_task_network(
        self, task_key: str, vpc_id: str | None = None, port: str | None = None, ip: str | None = None
    ) -> bool:
        """Delete the task's namespace; the kernel frees eth0, its router port and the /32 route with it.

        The /32 route is also deleted at once when known (from the arguments or from this driver's own
        ensure/observe), so a task whose namespace is still held by a process is cut off immediately:
        with no route back, the router's reverse-path check drops what it sends.
        """
        with self._lock:
            known = self._tasks.pop(task_key, None)
            if vpc_id is None or port is None or ip is None:
                vpc_id, port, ip = known if known is not None else (None, None, None)
            if vpc_id is not None and port is not None and ip is not None:
                router = self._router(vpc_id)
                if router is not None:
                    plink = router.nl.link(port)
                    if plink is not None:
                        _quiet(router.nl.request, _route_del(f"{ip}/32", plink["index"]), RTM_DELROUTE)
            return netns.remove(netplan.task_netns(self.cfg, task_key), self.cfg.netns_dir)

    # -- host access -------------------------------------------------------------------------------

    def ensure_host_access(self, vpc_id: str, cidrs: Sequence[str]) -> None:
        """A veth host <-> router and host routes for ``cidrs`` through it (see netplan's docstring).

        Raises ``HostRouteConflict`` (and changes nothing) when a CIDR overlaps an address or route of an
        interface that is not ours, or another VPC's access routes, or when the host link address is
        already used by an interface that is not ours.
        """
        cfg = self.cfg
        want = {str(ipaddress.IPv4Network(c)) for c in cidrs}
        with self._lock:
            router = self._require_router(vpc_id)
            host = self._host_nl()
            name = netplan.host_link(cfg, vpc_id)
            links = host.links()
            self._check_host_conflicts(host, links, vpc_id, want)
            link = next((x for x in links if attr(x, "IFLA_IFNAME") == name), None)
            rport = router.nl.link(netplan.router_access_port(cfg))
            if link is not None and attr(link, "IFLA_IFALIAS") not in (None, vpc_id):
                raise LinkConflict(f"host link {name} belongs to {attr(link, 'IFLA_IFALIAS')}")
            paired = (
                link is not None
                and rport is not None
                and attr(link, "IFLA_LINK") == rport["index"]
                and attr(rport, "IFLA_LINK") == link["index"]
            )
            if not paired:
                if link is not None:
                    _quiet(host.request, _link_set(link["index"]), RTM_DELLINK)
                if rport is not None:
                    _quiet(router.nl.request, _link_set(rport["index"]), RTM_DELLINK)
                echoed = host.request(
                    _veth(name, netplan.router_access_port(cfg), router.fd), RTM_NEWLINK, _CREATE | NLM_F_ECHO
                )
                host_index, rport_index = echoed[0]["index"], attr(echoed[0], "IFLA_LINK")
                # The host end needs no IPv6 (our link, our setting; the host's own defaults stay).
                if _HAS_IPV6:
                    netns.write_here({f"net/ipv6/conf/{name}/disable_ipv6": "1"})
            else:
                assert link is not None and rport is not None
                host_index, rport_index = link["index"], rport["index"]
            router.nl.batch(
                [
                    (_link_set(rport_index, up=True), RTM_NEWLINK, 0),
                    (_addr(rport_index, cfg.router_link_addr, 32), RTM_NEWADDR, _REPLACE),
                    (_route(f"{cfg.host_link_addr}/32", oif=rport_index), RTM_NEWROUTE, _REPLACE),
                ]
            )
            have = {
                _route_cidr(r)
                for r in host.routes()
                if attr(r, "RTA_OIF") == host_index and r["table"] == RT_TABLE_MAIN and r["dst_len"]
            }
            batch: list[tuple[Msg, int, int]] = [
                (_link_set(host_index, up=True, attrs=[("IFLA_IFALIAS", vpc_id)]), RTM_NEWLINK, 0),
                (_addr(host_index, cfg.host_link_addr, 32), RTM_NEWADDR, _REPLACE),
            ]
            batch += [
                (
                    _route(
                        cidr,
                        gateway=cfg.router_link_addr,
                        oif=host_index,
                        onlink=True,
                        prefsrc=cfg.host_link_addr,
                    ),
                    RTM_NEWROUTE,
                    _REPLACE,
                )
                for cidr in sorted(want)
            ]
            batch += [(_route_del(cidr, host_index), RTM_DELROUTE, 0) for cidr in sorted(have - want)]
            host.batch(batch)

    def _check_host_conflicts(self, host: Rtnl, links: list[Msg], vpc_id: str, want: set[str]) -> None:
        ours = {x["index"]: attr(x, "IFLA_IFALIAS") for x in links if self._is_our_host_link(x)}
        names = {x["index"]: _owner(x) for x in links}
        nets = [ipaddress.IPv4Network(c) for c in want]
        for a in host.addrs():
            if a["index"] in ours:
                continue
            local = attr(a, "IFA_LOCAL") or attr(a, "IFA_ADDRESS")
            iface = ipaddress.IPv4Interface(f"{local}/{a['prefixlen']}")
            if local == self.cfg.host_link_addr:
                raise HostRouteConflict(
                    f"the host link address {local} is already on {names.get(a['index'], a['index'])}"
                )
            if a["prefixlen"] == 32:
                # a host address alone (an instance's primary ENI address): it makes no route to shadow
                # ours, and the control plane gives no task the same address
                continue
            for net in nets:
                if net.overlaps(iface.network):
                    raise HostRouteConflict(f"{net} overlaps {iface} of {names.get(a['index'], a['index'])}")
        for r in host.routes():
            if r["dst_len"] == 0 or r["type"] in _ADDRESS_ROUTE_TYPES or r["table"] == RT_TABLE_LOCAL:
                continue  # default routes cover everything; local/broadcast ones follow the addresses
            dst = ipaddress.IPv4Network(_route_cidr(r))
            oif = attr(r, "RTA_OIF")
            owner = ours.get(oif) if oif is not None else None
            if owner == vpc_id:
                continue
            for net in nets:
                if net.overlaps(dst):
                    where = (
                        f"{owner}'s access link" if owner else f"a host route ({dst} dev {names.get(oif)})"
                    )
                    raise HostRouteConflict(f"{net} overlaps {where}")

    def _is_our_host_link(self, link: Msg) -> bool:
        return netplan.host_link_re(self.cfg).fullmatch(attr(link, "IFLA_IFNAME", "")) is not None

    def _drop_host_routes(self, vpc_id: str) -> None:
        host = self._host_nl()
        link = host.link(netplan.host_link(self.cfg, vpc_id))
        if link is None or attr(link, "IFLA_IFALIAS") not in (None, vpc_id):
            return
        doomed = [r for r in host.routes() if attr(r, "RTA_OIF") == link["index"] and r["dst_len"]]
        for r in doomed:
            _quiet(host.request, _route_del(_route_cidr(r), link["index"]), RTM_DELROUTE)

    def remove_host_access(self, vpc_id: str) -> bool:
        """Delete the host routes and the access veth (synchronously: rare, and the host must see it gone)."""
        with self._lock:
            host = self._host_nl()
            link = host.link(netplan.host_link(self.cfg, vpc_id))
            if link is None:
                return False
            if attr(link, "IFLA_IFALIAS") not in (None, vpc_id):
                raise LinkConflict(
                    f"host link {attr(link, 'IFLA_IFNAME')} belongs to {attr(link, 'IFLA_IFALIAS')}"
                )
            self._drop_host_routes(vpc_id)
            return _quiet(host.request, _link_set(link["index"]), RTM_DELLINK)

    # -- strays ------------------------------------------------------------------------------------

    def remove_stray(self, stray: Stray) -> bool:
        with self._lock:
            if stray.kind == "netns":
                if netplan.parse_netns(self.cfg, stray.name) is None:
                    raise ValueError(f"{stray.name} is not ours")
                return netns.remove(stray.name, self.cfg.netns_dir)
            if stray.kind == "link":
                host = self._host_nl()
                link = host.link(stray.name)
                if link is None:
                    return False
                if not self._is_our_host_link(link):
                    raise ValueError(f"{stray.name} is not ours")
                return _quiet(host.request, _link_set(link["index"]), RTM_DELLINK)
            raise ValueError(f"unknown stray kind {stray.kind!r}")

    # -- observe -----------------------------------------------------------------------------------

    def observe(self) -> ObservedNetwork:
        """Everything of ours on this host: namespaces, router ports, task ENIs, access links, routes."""
        with self._lock:
            routers: dict[str, ObservedRouter] = {}
            tasks: dict[str, ObservedTask] = {}
            strays: list[Stray] = []
            for name in netns.list_names(self.cfg.netns_dir):
                parsed = netplan.parse_netns(self.cfg, name)
                if parsed is None:
                    continue
                kind, ident = parsed
                if kind == "router":
                    seen_router = self._observe_router(ident)
                    if seen_router is None:
                        strays.append(Stray("netns", name))
                    else:
                        routers[ident] = seen_router
                elif kind == "task":
                    seen_task = self._observe_task(ident, name)
                    if seen_task is None:
                        strays.append(Stray("netns", name))
                    else:
                        tasks[ident] = seen_task
                elif kind in ("bridged", "loadbalancer"):
                    continue  # the bridge driver's (drivers/bridge.py), the LBs' (agent/loadbalancers.py)
                else:
                    strays.append(Stray("netns", name))
            tasks = {key: self._match_router(t, routers) for key, t in tasks.items()}
            for t in tasks.values():
                if t.vpc_id is not None and t.port is not None and len(t.addrs) == 1:
                    self._tasks[t.task_key] = (t.vpc_id, t.port, next(iter(t.addrs)).partition("/")[0])
            access, link_strays = self._observe_host()
            return ObservedNetwork(routers, tasks, access, tuple(strays + link_strays))

    def _observe_router(self, vpc_id: str) -> ObservedRouter | None:
        router = self._router(vpc_id)
        if router is None:
            return None
        nl = router.nl
        links = nl.links()
        routes = nl.routes()
        addrs = nl.addrs()
        port_re = netplan.eni_port_re(self.cfg)
        host_routes: dict[int, set[str]] = {}
        for r in routes:
            if r["dst_len"] == 32 and r["table"] == RT_TABLE_MAIN and attr(r, "RTA_OIF") is not None:
                host_routes.setdefault(attr(r, "RTA_OIF"), set()).add(attr(r, "RTA_DST"))
        ports: dict[str, ObservedPort] = {}
        for link in links:
            ifname = attr(link, "IFLA_IFNAME", "")
            if not port_re.fullmatch(ifname):
                continue
            via = frozenset(host_routes.get(link["index"], ()))
            ports[ifname] = ObservedPort(ifname, link["index"], attr(link, "IFLA_IFALIAS"), _is_up(link), via)
        access = next(
            (x for x in links if attr(x, "IFLA_IFNAME") == netplan.router_access_port(self.cfg)), None
        )
        access_ok = (
            access is not None
            and _is_up(access)
            and any(
                a["index"] == access["index"] and attr(a, "IFA_LOCAL") == self.cfg.router_link_addr
                for a in addrs
            )
            and any(
                attr(r, "RTA_OIF") == access["index"] and _route_cidr(r) == f"{self.cfg.host_link_addr}/32"
                for r in routes
            )
        )
        return ObservedRouter(
            vpc_id=vpc_id,
            netns=router.name,
            forwarding=netns.read_at(router.sysdir, "ip_forward") == "1",
            router_addrs=frozenset(
                attr(a, "IFA_LOCAL")
                for a in addrs
                if a["index"] == LO_INDEX
                and a["prefixlen"] == 32
                and not attr(a, "IFA_LOCAL", "").startswith("127.")
                and attr(a, "IFA_LOCAL") != TASK_ENDPOINT_IP
            ),
            unreachable=frozenset(_route_cidr(r) for r in routes if r["type"] == RTN_UNREACHABLE),
            ports=ports,
            access_ok=access_ok,
        )

    def _observe_task(self, task_key: str, name: str) -> ObservedTask | None:
        fd = netns.open_ns(name, self.cfg.netns_dir)
        if fd is None:
            return None
        try:
            with Rtnl(netns.netlink_socket_in(fd)) as nl:
                links = {attr(x, "IFLA_IFNAME"): x for x in nl.links()}
                eth0 = links.get("eth0")
                lo = links.get("lo")
                if eth0 is None:
                    return ObservedTask(task_key, name)
                addrs = frozenset(
                    f"{attr(a, 'IFA_LOCAL')}/{a['prefixlen']}"
                    for a in nl.addrs()
                    if a["index"] == eth0["index"]
                )
                gateway = next(
                    (
                        attr(r, "RTA_GATEWAY")
                        for r in nl.routes()
                        if r["dst_len"] == 0 and r["table"] == RT_TABLE_MAIN
                    ),
                    None,
                )
                return ObservedTask(
                    task_key=task_key,
                    netns=name,
                    mac=attr(eth0, "IFLA_ADDRESS"),
                    addrs=addrs,
                    gateway=gateway,
                    up=_is_up(eth0) and lo is not None and _is_up(lo),
                    peer_index=attr(eth0, "IFLA_LINK"),
                )
        finally:
            os.close(fd)

    @staticmethod
    def _match_router(task: ObservedTask, routers: Mapping[str, ObservedRouter]) -> ObservedTask:
        """Find the router whose port is eth0's peer and routes the task's address (unique, or none)."""
        if task.peer_index is None or len(task.addrs) != 1:
            return task
        ip = next(iter(task.addrs)).partition("/")[0]
        found = [
            (r.vpc_id, p.ifname)
            for r in routers.values()
            for p in r.ports.values()
            if p.index == task.peer_index and ip in p.routes
        ]
        if len(found) != 1:
            return task
        vpc_id, port = found[0]
        return dataclasses.replace(task, vpc_id=vpc_id, port=port)

    def _observe_host(self) -> tuple[dict[str, ObservedHostAccess], list[Stray]]:
        host = self._host_nl()
        access: dict[str, ObservedHostAccess] = {}
        strays: list[Stray] = []
        links = [x for x in host.links() if self._is_our_host_link(x)]
        if not links:
            return access, strays
        addrs = host.addrs()
        routes = host.routes()
        for link in links:
            ifname = attr(link, "IFLA_IFNAME")
            vpc_id = attr(link, "IFLA_IFALIAS")
            try:
                if vpc_id is None or netplan.host_link(self.cfg, vpc_id) != ifname:
                    raise ValueError(vpc_id)
            except ValueError:
                strays.append(Stray("link", ifname))
                continue
            access[vpc_id] = ObservedHostAccess(
                vpc_id=vpc_id,
                ifname=ifname,
                up=_is_up(link),
                has_addr=any(
                    a["index"] == link["index"] and attr(a, "IFA_LOCAL") == self.cfg.host_link_addr
                    for a in addrs
                ),
                routes=frozenset(
                    _route_cidr(r)
                    for r in routes
                    if attr(r, "RTA_OIF") == link["index"]
                    and r["dst_len"]
                    and r["table"] == RT_TABLE_MAIN
                    and attr(r, "RTA_GATEWAY") == self.cfg.router_link_addr
                ),
            )
        return access, strays
