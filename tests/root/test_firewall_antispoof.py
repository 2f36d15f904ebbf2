"""EC2's source/destination check and isolation, enforced by the compiled table in the real VPC router.

Every task here carries one group that allows everything in and out, so whatever is dropped is dropped by
the ``antispoof`` chain (``iifname . ip saddr . ether saddr`` must be the ENI's port, address and MAC), by
the routing of the router, or by the forward chain's refusal of new flows to the host port; never by a
security-group rule. Each drop is checked against a control without the table (or with the task's real
identity), so a probe that could not have arrived anyway proves nothing and fails the test.

The host access link is the lab's *fake host* (:mod:`tests.root.fwlab`): 169.254.100.1 in a namespace of the
test, attached to the router's access port, so the host's own routes are never touched.
"""

from __future__ import annotations

import secrets
import selectors
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from taskvpc.agent.drivers import netns
from taskvpc.agent.netplan import TaskEni
from taskvpc.netmodel.evaluator import Flow, GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.security_groups import Rule, new_group_egress
from tests.root import fwlab

pytestmark = [
    pytest.mark.root,
]

WAIT = 0.3
OBSERVER_PORT = 999  # outside fwlab.PORTS: the observer below owns it
OPEN = GroupRules(
    "sg-open", (Rule("ingress", "-1", None, None, cidr_ipv4="0.0.0.0/0"),), (new_group_egress(),)
)
VPC_ONLY = GroupRules(
    "sg-vpc", (Rule("ingress", "-1", None, None, cidr_ipv4="10.243.0.0/16"),), (new_group_egress(),)
)


@pytest.fixture
def lab() -> Iterator[fwlab.Lab]:
    with fwlab.lab("tva", 3, fake_host=True, tag="as") as made:
        yield made


def load(lab: fwlab.Lab, group: GroupRules) -> None:
    """Every task carries ``group``; the table replaces whatever was there; conntrack starts empty."""
    enis = tuple(EniPort(e.eni_id, lab.port(e), e.ip, e.mac, (group.group_id,)) for e in lab.enis)
    model = FirewallModel(lab.table, enis, {group.group_id: group}, lab.host_port, fwlab.HOST_IP)
    lab.fw.apply(lab.vpc_id, render(compile_ir(model)))
    lab.flush_conntrack()


def arrived(lab: fwlab.Lab, dst: TaskEni, send: Callable[[bytes], None]) -> bool:
    """Did the datagram ``send(token)`` sends reach UDP port 999 of ``dst``? (One way: no reply needed.)"""
    token = secrets.token_bytes(8)
    with fwlab.sock_in(lab.tasks[lab.enis.index(dst)].fd, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", OBSERVER_PORT))
        sock.setblocking(False)
        send(token)
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + WAIT
            while (left := deadline - time.monotonic()) > 0:
                if sel.select(left) and sock.recv(2048) == token:
                    return True
    return False


def forge(lab: fwlab.Lab, src: TaskEni, dst: TaskEni, mac: str, ip: str) -> Callable[[bytes], None]:
    """A sender of raw Ethernet frames out of ``src``'s eth0 (AF_PACKET): any source MAC and IP."""

    def send(token: bytes) -> None:
        frame = (
            lab.router_mac(lab.port(src))
            + bytes.fromhex(mac.replace(":", ""))
            + b"\x08\x00"
            + fwlab.ipv4_udp(ip, dst.ip, 40000, OBSERVER_PORT, token)
        )
        with fwlab.sock_in(lab.tasks[lab.enis.index(src)].fd, socket.SOCK_RAW, 0, socket.AF_PACKET) as raw:
            raw.bind(("eth0", 0))
            raw.send(frame)

    return send


def plain(lab: fwlab.Lab, src: TaskEni, dst: TaskEni) -> Callable[[bytes], None]:
    """A sender through the task's own UDP stack (its addresses and MAC as configured)."""

    def send(token: bytes) -> None:
        with fwlab.sock_in(lab.tasks[lab.enis.index(src)].fd, socket.SOCK_DGRAM) as sock:
            sock.sendto(token, (dst.ip, OBSERVER_PORT))

    return send


def set_rp_filter(lab: fwlab.Lab, value: str) -> None:
    keys = ["all", "default", *(lab.port(e) for e in lab.enis)]
    netns.write_sysctls(lab.router_fd, {f"net/ipv4/conf/{k}/rp_filter": value for k in keys})


def in_task(lab: fwlab.Lab, eni: TaskEni, *args: str) -> None:
    name = lab.tasks[lab.enis.index(eni)].name
    subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True)


# -- forged source address or MAC --------------------------------------------------------------------------


@pytest.mark.parametrize("rp_filter", ["1", "0"], ids=["strict-rp-filter", "no-rp-filter"])
def test_forged_source_ip_or_mac_is_dropped(lab: fwlab.Lab, rp_filter: str) -> None:
    """Frames from task a to task b with every combination of a wrong source. With the router's strict
    reverse-path filter (what the driver sets) and with it turned off, so that the table alone is tested."""
    a, b, c = lab.enis
    set_rp_filter(lab, rp_filter)
    forged = {
        "own MAC and IP": (a.mac, a.ip),
        "unused IP": (a.mac, "10.243.0.99"),
        "neighbour's IP": (a.mac, c.ip),
        "other MAC": ("02:7e:00:00:00:99", a.ip),
        "neighbour's MAC": (c.mac, a.ip),
        "neighbour's MAC and IP": (c.mac, c.ip),
    }

    def passing() -> set[str]:
        return {name for name, (mac, ip) in forged.items() if arrived(lab, b, forge(lab, a, b, mac, ip))}

    # Without the table: a wrong MAC always passes, and a wrong address too without rp_filter.
    macs_only = {"own MAC and IP", "other MAC", "neighbour's MAC"}
    assert passing() == (macs_only if rp_filter == "1" else set(forged))
    load(lab, OPEN)
    assert passing() == {"own MAC and IP"}


def test_task_changing_its_mac_is_cut_off(lab: fwlab.Lab) -> None:
    """Root in the task sets another MAC on its ENI: nothing it sends passes until the MAC is back."""
    a, b, _ = lab.enis
    load(lab, OPEN)
    assert arrived(lab, b, plain(lab, a, b))
    in_task(lab, a, "link", "set", "eth0", "address", "02:7e:00:00:00:99")
    try:
        assert not arrived(lab, b, plain(lab, a, b))
    finally:
        in_task(lab, a, "link", "set", "eth0", "address", a.mac)
    assert arrived(lab, b, plain(lab, a, b))


def test_task_adding_an_address_cannot_use_it(lab: fwlab.Lab) -> None:
    """Root in the task adds a neighbour's address (or an unused one) and sends from it: dropped, even with
    the router's rp_filter off; its own address keeps working."""
    a, b, c = lab.enis
    set_rp_filter(lab, "0")
    load(lab, OPEN)
    for extra in ("10.243.0.99", c.ip):
        in_task(lab, a, "addr", "add", f"{extra}/32", "dev", "eth0")

    def from_address(ip: str) -> Callable[[bytes], None]:
        def send(token: bytes) -> None:
            with fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_DGRAM) as sock:
                sock.bind((ip, 0))
                sock.sendto(token, (b.ip, OBSERVER_PORT))

        return send

    assert not arrived(lab, b, from_address("10.243.0.99"))
    assert not arrived(lab, b, from_address(c.ip))
    assert arrived(lab, b, from_address(a.ip))


def test_forged_arp_cannot_take_a_neighbours_traffic(lab: fwlab.Lab) -> None:
    """Task a announces task c's address with its own MAC (gratuitous ARP, request and reply): the router
    routes c's address by its /32 through c's port, so b's flows to c still reach c, not a."""
    a, b, c = lab.enis
    load(lab, OPEN)
    router_mac = lab.router_mac(lab.port(a))
    mine, theirs = bytes.fromhex(a.mac.replace(":", "")), socket.inet_aton(c.ip)
    with fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_RAW, 0, socket.AF_PACKET) as raw:
        raw.bind(("eth0", 0))
        for op, dst in ((1, b"\xff" * 6), (2, router_mac)):
            arp = b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big") + mine + theirs + bytes(6) + theirs
            raw.send(dst + mine + b"\x08\x06" + arp)
    with fwlab.Prober(lab.nodes) as prober:
        to_c = Flow(b.ip, c.ip, "tcp", dst_port=7)
        assert prober.run([fwlab.Probe(1, 2, to_c)], 1.0) == ["ok"]
    assert arrived(lab, c, plain(lab, b, c))


# -- isolation ---------------------------------------------------------------------------------------------


def test_tasks_never_open_flows_to_the_host(lab: fwlab.Lab) -> None:
    """Whatever a task's egress rules allow, a NEW flow out of the access port is dropped; the host reaches
    tasks as their ingress rules say (its source is 169.254.100.1, an address outside the VPC)."""
    host = len(lab.tasks)
    a_ip = lab.enis[0].ip

    def probes(src: int, dst: int) -> list[fwlab.Probe]:
        s, d = lab.nodes[src].ip, lab.nodes[dst].ip
        return [
            fwlab.Probe(src, dst, Flow(s, d, "tcp", dst_port=7)),
            fwlab.Probe(src, dst, Flow(s, d, "udp", dst_port=7)),
            fwlab.Probe(src, dst, Flow(s, d, "icmp", icmp_type=8, icmp_code=0)),
        ]

    with fwlab.Prober(lab.nodes) as prober:
        assert prober.run(probes(0, host), 1.0) == ["ok"] * 3, "without the table the host is reachable"
        load(lab, OPEN)
        assert prober.run(probes(0, host), WAIT) == ["timeout"] * 3, "task -> host: never a new flow"
        assert prober.run(probes(host, 0), 1.0) == ["ok"] * 3, "host -> task: its ingress allows 0.0.0.0/0"
        load(lab, VPC_ONLY)
        assert prober.run(probes(host, 0), WAIT) == ["timeout"] * 3, f"{a_ip} admits the VPC only"
        assert prober.run(probes(1, 0), 1.0) == ["ok"] * 3


def test_no_path_to_another_vpc(lab: fwlab.Lab) -> None:
    """A task of one VPC reaches neither the tasks nor the router of another VPC on the same host, even with
    groups that allow everything on both sides."""
    with fwlab.lab("tvo", 1, tag="ov", net=244) as other:
        load(lab, OPEN)
        load(other, OPEN)
        target = other.enis[0]
        nodes = [*lab.nodes, *other.tasks]
        with fwlab.Prober(nodes) as prober:
            flows = [
                Flow(lab.enis[0].ip, target.ip, "tcp", dst_port=7),
                Flow(lab.enis[0].ip, target.ip, "udp", dst_port=7),
                Flow(lab.enis[0].ip, target.ip, "icmp", icmp_type=8, icmp_code=0),
            ]
            results = prober.run([fwlab.Probe(0, len(nodes) - 1, f) for f in flows], WAIT)
            assert "ok" not in results, results
        assert not arrived(other, target, plain(lab, lab.enis[0], target))
