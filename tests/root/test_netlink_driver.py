"""The netlink data-plane driver on real namespaces, proved with real packets.

Every namespace, link and route made here carries a prefix unique to the test (``tvt`` + 4 hex digits),
and the ``cfg`` fixture removes all of it and then checks ``ip netns list``, ``ip -br link`` and
``ip route`` for leftovers, even when the test failed. Traffic goes only to addresses inside the
namespaces created here (10.241.0.0/16, a test-only range) or to 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from taskvpc.agentapi.network import Subnet
from tests.root import fwlab, hostcheck

pytestmark = [
    pytest.mark.root,
]

if os.geteuid() == 0:
    from taskvpc.agent import netplan
    from taskvpc.agent.drivers import netns
    from taskvpc.agent.drivers.netlink import HostRouteConflict, NetlinkDriver, RouterMissing
    from taskvpc.agent.netplan import (
        DesiredNetwork,
        DesiredTask,
        DesiredVpc,
        EnsureTaskNetwork,
        NetConfig,
        RemoveTaskNetwork,
        TaskEni,
    )

SUBNET_A = Subnet.of("subnet-0a", "10.241.0.0/20")
SUBNET_B = Subnet.of("subnet-0b", "10.241.16.0/20")
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{sys.argv[2]} {peer[0]}\n".encode())
    c.close()
"""


@pytest.fixture
def cfg() -> Iterator[NetConfig]:
    config = NetConfig(prefix="tvt" + secrets.token_hex(2))
    try:
        yield config
    finally:
        hostcheck.scrub(config.prefix)
        left = hostcheck.wait_clean(config.prefix)
        assert not left, f"left behind: {left}"


@pytest.fixture
def driver(cfg: NetConfig) -> Iterator[NetlinkDriver]:
    with NetlinkDriver(cfg) as drv:
        yield drv


@dataclass
class World:
    cfg: NetConfig
    vpc_id: str
    a1: TaskEni
    a2: TaskEni
    b1: TaskEni

    @property
    def desired(self) -> DesiredNetwork:
        vpc = DesiredVpc(self.vpc_id, (SUBNET_A, SUBNET_B), (SUBNET_A.cidr_block, SUBNET_B.cidr_block))
        return DesiredNetwork((vpc,), tuple(DesiredTask(self.vpc_id, e) for e in (self.a1, self.a2, self.b1)))

    def ns(self, eni: TaskEni) -> str:
        return netplan.task_netns(self.cfg, eni.task_key)


def _eni(n: int, ip: str, gateway: str) -> TaskEni:
    return fwlab.test_eni(n, ip, gateway, "task")


def build(driver: NetlinkDriver) -> World:
    world = World(
        driver.cfg,
        "vpc-" + secrets.token_hex(9)[:17],
        _eni(1, "10.241.0.5", "10.241.0.1"),
        _eni(2, "10.241.0.6", "10.241.0.1"),
        _eni(3, "10.241.16.7", "10.241.16.1"),
    )
    driver.ensure_vpc_router(world.vpc_id, [SUBNET_A, SUBNET_B])
    driver.ensure_host_access(world.vpc_id, [SUBNET_A.cidr_block, SUBNET_B.cidr_block])
    for eni in (world.a1, world.a2, world.b1):
        driver.ensure_task_network(world.vpc_id, eni)
    return world


@pytest.fixture
def world(driver: NetlinkDriver) -> World:
    return build(driver)


Listeners = dict[str, "subprocess.Popen[str]"]


@pytest.fixture
def listeners(world: World) -> Iterator[Listeners]:
    """A TCP listener on 0.0.0.0:80 in each of the three task namespaces (real processes, via nsenter)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for eni in (world.a1, world.a2, world.b1):
            path = netns.path_of(world.ns(eni), world.cfg.netns_dir)
            proc = subprocess.Popen(
                ["nsenter", f"--net={path}", sys.executable, "-c", SERVER, "80", eni.task_key],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs[eni.task_key] = proc
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()  # by PID: only the processes started here
            proc.wait(timeout=5)


def _socket_in(cfg: NetConfig, ns_name: str | None) -> socket.socket:
    """A TCP socket in the named namespace (None: the host). A socket keeps the namespace it was made in."""
    if ns_name is None:
        return socket.socket()
    fd = netns.open_ns(ns_name, cfg.netns_dir)
    assert fd is not None, ns_name
    try:
        with netns.entered(fd):
            return socket.socket()
    finally:
        os.close(fd)


def fetch(cfg: NetConfig, ns_name: str | None, ip: str, port: int = 80, timeout: float = 2.0) -> str:
    with _socket_in(cfg, ns_name) as sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        return sock.makefile().readline().strip()


def links_in(cfg: NetConfig, ns_name: str) -> dict[str, str]:
    """Interface name -> MAC as a process inside the namespace sees them (netlink, not the host's /sys)."""
    path = netns.path_of(ns_name, cfg.netns_dir)
    out = subprocess.run(
        ["nsenter", f"--net={path}", "ip", "-j", "link", "show"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return {link["ifname"]: link.get("address", "") for link in json.loads(out)}


def in_ns(cfg: NetConfig, ns_name: str, code: str) -> str:
    path = netns.path_of(ns_name, cfg.netns_dir)
    return subprocess.run(
        ["nsenter", f"--net={path}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()


# -- tests ------------------------------------------------------------------------------------------


def test_tasks_reach_each_other_and_the_host_reaches_them(world: World, listeners: Listeners) -> None:
    cfg, a1, a2, b1 = world.cfg, world.a1, world.a2, world.b1
    # Same subnet (proxy ARP by the router), both ways; each answer names the task that answered and
    # the source it saw: the peer's own ENI address, no NAT anywhere.
    assert fetch(cfg, world.ns(a2), a1.ip) == f"{a1.task_key} {a2.ip}"
    assert fetch(cfg, world.ns(a1), a2.ip) == f"{a2.task_key} {a1.ip}"
    # Across subnets, through the subnet routers.
    assert fetch(cfg, world.ns(b1), a1.ip) == f"{a1.task_key} {b1.ip}"
    assert fetch(cfg, world.ns(a2), b1.ip) == f"{b1.task_key} {a2.ip}"
    # From the host, through the access link: the source is the host link address.
    for eni in (a1, a2, b1):
        assert fetch(cfg, None, eni.ip) == f"{eni.task_key} {cfg.host_link_addr}"
    # Both tasks of subnet A listen on port 80 at the same time (listeners fixture bound 0.0.0.0:80).
    assert len(listeners) == 3


def test_same_subnet_neighbour_is_answered_by_the_router_at_once(world: World, listeners: Listeners) -> None:
    cfg = world.cfg
    started = time.monotonic()
    fetch(cfg, world.ns(world.a1), world.a2.ip)
    # Linux delays proxy-ARP answers up to 0.8 s unless proxy_delay is 0 on the router port.
    assert time.monotonic() - started < 0.3
    arp = in_ns(cfg, world.ns(world.a1), "print(open('/proc/net/arp').read())")
    port_mac = links_in(cfg, netplan.router_netns(cfg, world.vpc_id))[netplan.eni_port(cfg, world.a1.eni_id)]
    line = next(x for x in arp.splitlines() if x.split()[0] == world.a2.ip)
    assert line.split()[3] == port_mac  # a2's address resolves to a1's router port: proxy ARP


def neighbours(cfg: NetConfig, ns_name: str) -> dict[str, tuple[str, list[str]]]:
    """Address -> (MAC, states) of the namespace's IPv4 neighbour table."""
    path = netns.path_of(ns_name, cfg.netns_dir)
    out = subprocess.run(
        ["nsenter", f"--net={path}", "ip", "-4", "-j", "neigh", "show"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return {n["dst"]: (n.get("lladdr", ""), n.get("state", [])) for n in json.loads(out or "[]")}


def test_neither_end_of_a_task_veth_resolves_the_other_by_arp(world: World, listeners: Listeners) -> None:
    # The neighbour table is host-wide and its learnt entries are capped (gc_thresh3, 1,024 by default):
    # thousands of tasks resolved by ARP in one router would overflow it. Permanent ones are not counted.
    cfg = world.cfg
    router = neighbours(cfg, netplan.router_netns(cfg, world.vpc_id))
    router_links = links_in(cfg, netplan.router_netns(cfg, world.vpc_id))
    for eni in (world.a1, world.a2, world.b1):
        assert router[eni.ip] == (eni.mac, ["PERMANENT"])
        port_mac = router_links[netplan.eni_port(cfg, eni.eni_id)]
        assert neighbours(cfg, world.ns(eni))[eni.gateway] == (port_mac, ["PERMANENT"])
    assert fetch(cfg, world.ns(world.b1), world.a1.ip) == f"{world.a1.task_key} {world.b1.ip}"
    assert neighbours(cfg, world.ns(world.b1))[world.b1.gateway][1] == ["PERMANENT"]  # still, after traffic


def test_eth0_is_the_eni_and_the_task_sees_only_its_own_interfaces(world: World) -> None:
    cfg, eni = world.cfg, world.a1
    links = links_in(cfg, world.ns(eni))
    assert sorted(links) == ["eth0", "lo"]
    assert links["eth0"] == eni.mac
    assert in_ns(
        cfg, world.ns(eni), "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
    ) == str(["eth0", "lo"])
    with NetlinkDriver(cfg) as fresh:
        observed = fresh.observe()
    task = observed.tasks[eni.task_key]
    assert task.addrs == frozenset({"10.241.0.5/20"})
    assert task.gateway == "10.241.0.1"
    assert task.vpc_id == world.vpc_id
    port = observed.routers[world.vpc_id].ports[netplan.eni_port(cfg, eni.eni_id)]
    assert port.eni_id == eni.eni_id and port.routes == frozenset({eni.ip})
    assert len(port.ifname) <= 15 and len(netplan.host_link(cfg, world.vpc_id)) <= 15


def queues_in(cfg: NetConfig, ns_name: str, ifname: str) -> tuple[int, int]:
    """(tx, rx) queues of an interface as the namespace's netlink reports them."""
    path = netns.path_of(ns_name, cfg.netns_dir)
    out = subprocess.run(
        ["nsenter", f"--net={path}", "ip", "-d", "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    link = json.loads(out)[0]
    return link["num_tx_queues"], link["num_rx_queues"]


def test_each_end_of_a_task_veth_has_one_queue_each_way(world: World) -> None:
    """Unless told, a veth gets a queue per possible CPU each way, every one with its sysfs directory and
    rx NAPI/XDP state, which the data plane never uses: kernel memory per task that grows with the CPUs."""
    cfg, eni = world.cfg, world.a1
    assert queues_in(cfg, world.ns(eni), "eth0") == (1, 1)
    router = netplan.router_netns(cfg, world.vpc_id)
    assert queues_in(cfg, router, netplan.eni_port(cfg, eni.eni_id)) == (1, 1)


def _rp_filter_drops(cfg: NetConfig, router_ns: str) -> int:
    """The router namespace's count of packets dropped by the reverse-path check."""
    text = in_ns(cfg, router_ns, "print(open('/proc/net/netstat').read())").splitlines()
    for names, values in zip(text[::2], text[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["IPReversePathFilter"])
    raise AssertionError("no TcpExt counters")


def test_a_task_cannot_send_with_another_address(world: World, listeners: Listeners) -> None:
    cfg = world.cfg
    router_ns = netplan.router_netns(cfg, world.vpc_id)
    drops = _rp_filter_drops(cfg, router_ns)
    with _socket_in(cfg, world.ns(world.a1)) as sock:
        # IP_TRANSPARENT: send with a2's address from inside a1 (a root task could do the same)
        sock.setsockopt(socket.SOL_IP, 19, 1)
        sock.bind((world.a2.ip, 0))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.connect((world.b1.ip, 80))
    assert _rp_filter_drops(cfg, router_ns) > drops  # the router's strict reverse-path check dropped it
    # The same socket with its own address gets through (the listener is there).
    assert fetch(cfg, world.ns(world.a1), world.b1.ip) == f"{world.b1.task_key} {world.a1.ip}"


def test_ensure_twice_changes_nothing_and_plans_nothing(driver: NetlinkDriver, world: World) -> None:
    before = driver.observe()
    build_again = [
        lambda: driver.ensure_vpc_router(world.vpc_id, [SUBNET_A, SUBNET_B]),
        lambda: driver.ensure_host_access(world.vpc_id, [SUBNET_A.cidr_block, SUBNET_B.cidr_block]),
        *[lambda e=e: driver.ensure_task_network(world.vpc_id, e) for e in (world.a1, world.a2, world.b1)],
    ]
    for step in build_again:
        step()
    after = driver.observe()
    assert after == before
    assert netplan.plan(world.cfg, world.desired, after) == []


def test_remove_leaves_nothing_and_absent_is_success(driver: NetlinkDriver, world: World) -> None:
    cfg = world.cfg
    for eni in (world.a1, world.a2, world.b1):
        assert driver.remove_task_network(eni.task_key) is True
        assert driver.remove_task_network(eni.task_key) is False
    assert driver.remove_host_access(world.vpc_id) is True
    assert driver.remove_host_access(world.vpc_id) is False
    assert driver.remove_vpc_router(world.vpc_id) is True
    assert driver.remove_vpc_router(world.vpc_id) is False
    assert hostcheck.wait_clean(cfg.prefix) == []


def test_router_subnets_converge(driver: NetlinkDriver, cfg: NetConfig) -> None:
    vpc_id = "vpc-" + secrets.token_hex(9)[:17]
    driver.ensure_vpc_router(vpc_id, [SUBNET_A])
    driver.ensure_vpc_router(vpc_id, [SUBNET_A, SUBNET_B])
    router = driver.observe().routers[vpc_id]
    assert router.router_addrs == {"10.241.0.1", "10.241.16.1"} and router.forwarding
    driver.ensure_vpc_router(vpc_id, [SUBNET_B])
    router = driver.observe().routers[vpc_id]
    assert router.router_addrs == {"10.241.16.1"} and router.unreachable == {"10.241.16.0/20"}


def test_task_without_router_is_refused(driver: NetlinkDriver) -> None:
    with pytest.raises(RouterMissing):
        driver.ensure_task_network("vpc-" + "0" * 17, _eni(9, "10.241.0.9", "10.241.0.1"))


def test_host_access_refuses_overlapping_routes(driver: NetlinkDriver, world: World) -> None:
    # 127.1.0.0/16 overlaps lo's 127.0.0.1/8 (an interface that is not ours): refused, nothing changed.
    with pytest.raises(HostRouteConflict):
        driver.ensure_host_access(world.vpc_id, ["127.1.0.0/16"])
    assert not [line for line in hostcheck.leftovers(world.cfg.prefix) if "127.1." in line]
    # A second VPC with the same CIDR cannot be routed from the host too.
    other = "vpc-" + secrets.token_hex(9)[:17]
    driver.ensure_vpc_router(other, [SUBNET_A])
    with pytest.raises(HostRouteConflict):
        driver.ensure_host_access(other, [SUBNET_A.cidr_block])
    # The first VPC is still reachable as before.
    assert driver.observe().host_access[world.vpc_id].routes == {SUBNET_A.cidr_block, SUBNET_B.cidr_block}


def test_host_access_tolerates_a_lone_address_of_the_vpc(
    driver: NetlinkDriver, world: World, listeners: Listeners
) -> None:
    # An instance's primary ENI address: a /32 of the VPC on an interface that is not ours. It makes no
    # route to shadow the access routes, so host access stays (a wider one is refused, as above).
    lone = "10.241.0.200/32"
    subprocess.run(["ip", "addr", "add", lone, "dev", "lo"], check=True)
    try:
        driver.ensure_host_access(world.vpc_id, [SUBNET_A.cidr_block, SUBNET_B.cidr_block])
        assert fetch(world.cfg, None, world.a1.ip) == f"{world.a1.task_key} {world.cfg.host_link_addr}"
    finally:
        subprocess.run(["ip", "addr", "del", lone, "dev", "lo"], check=False)


def test_restart_adopts_desired_and_removes_the_rest(
    cfg: NetConfig, driver: NetlinkDriver, world: World, listeners: Listeners
) -> None:
    # The fixture's driver made the world and dies (as with kill -9: no cleanup, its handles just go);
    # a stale task and a stray namespace are left behind.
    driver.close()
    with NetlinkDriver(cfg) as first:
        stale = _eni(7, "10.241.0.77", "10.241.0.1")
        first.ensure_task_network(world.vpc_id, stale)
    fd, sock = netns.create(f"{cfg.prefix}-x-junk", cfg.netns_dir)
    sock.close()
    os.close(fd)
    # Damage one desired task: its default route is gone.
    path = netns.path_of(world.ns(world.b1), cfg.netns_dir)
    subprocess.run(["nsenter", f"--net={path}", "ip", "route", "del", "default"], check=True)

    restarted = NetlinkDriver(cfg)  # a new agent: knows nothing but what it observes
    try:
        observed = restarted.observe()
        actions = netplan.plan(cfg, world.desired, observed)
        assert (
            RemoveTaskNetwork(stale.task_key, world.vpc_id, netplan.eni_port(cfg, stale.eni_id), stale.ip)
            in actions
        )
        assert EnsureTaskNetwork(world.vpc_id, world.b1) in actions
        assert [a for a in actions if isinstance(a, EnsureTaskNetwork)] == [
            EnsureTaskNetwork(world.vpc_id, world.b1)
        ]
        assert any(
            getattr(a, "stray", None) == netplan.Stray("netns", f"{cfg.prefix}-x-junk") for a in actions
        )
        report = netplan.apply(actions, restarted)
        assert report.ok, report.failed
        assert netplan.plan(cfg, world.desired, restarted.observe()) == []
        assert netns.open_ns(netplan.task_netns(cfg, stale.task_key), cfg.netns_dir) is None
        # Adopted tasks kept running through it; the repaired one answers across subnets again.
        assert fetch(cfg, None, world.a1.ip) == f"{world.a1.task_key} {cfg.host_link_addr}"
        assert fetch(cfg, world.ns(world.b1), world.a2.ip) == f"{world.a2.task_key} {world.b1.ip}"
        # Desired nothing: everything goes, and the host is clean.
        report = netplan.apply(netplan.plan(cfg, DesiredNetwork(), restarted.observe()), restarted)
        assert report.ok, report.failed
    finally:
        restarted.close()
    for proc in listeners.values():
        proc.kill()  # by PID; they hold their namespaces (and so the veths) alive
        proc.wait(timeout=5)
    assert hostcheck.wait_clean(cfg.prefix) == []


def test_fifty_task_networks_timing(driver: NetlinkDriver, cfg: NetConfig) -> None:
    vpc_id = "vpc-" + secrets.token_hex(9)[:17]
    driver.ensure_vpc_router(vpc_id, [SUBNET_A])
    enis = [_eni(i % 250, f"10.241.{i // 200}.{10 + i % 200}", "10.241.0.1") for i in range(50)]
    started = time.perf_counter()
    for eni in enis:
        driver.ensure_task_network(vpc_id, eni)
    create_ms = (time.perf_counter() - started) * 1000 / len(enis)
    started = time.perf_counter()
    for eni in enis:
        driver.remove_task_network(eni.task_key)
    remove_ms = (time.perf_counter() - started) * 1000 / len(enis)
    print(f"\ntask network: create {create_ms:.2f} ms, remove {remove_ms:.2f} ms (50 tasks)")
    assert create_ms < 25 and remove_ms < 10  # generous: the machine is noisy; ~2 ms and ~0.5 ms measured
