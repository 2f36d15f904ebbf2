"""An address handed from a stopped task to a new one carries none of the old task's connections.

The router accepts ``ct state established`` before any group rule, and conntrack entries outlive the veth
they came through: without cleanup, a UDP stream allowed to the old task would reach the new task (same
address) whatever the new task's groups say. FirewallSync forgets the router's entries naming an address
when its ENI is unregistered and before a new network takes it (drivers/conntrack.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from taskvpc.agent.drivers import conntrack, netns
from taskvpc.agent.security import FirewallSync
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort
from taskvpc.netmodel.security_groups import Rule, new_group_egress
from tests.root import fwlab

pytestmark = [
    pytest.mark.root,
]

PORT = 5000
OPEN = GroupRules(
    "sg-open", (Rule("ingress", "udp", PORT, PORT, cidr_ipv4="0.0.0.0/0"),), (new_group_egress(),)
)
CLOSED = GroupRules("sg-closed", (), (new_group_egress(),))


@pytest.fixture
def lab() -> Iterator[fwlab.Lab]:
    with fwlab.lab("tvk", 2, tag="ck", net=241) as made:
        yield made


def entries(lab: fwlab.Lab, ip: str) -> int:
    with netns.netlink_socket_in(lab.router_fd, conntrack.NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        return conntrack.count_address(sock, ip)


def test_a_reused_address_gets_no_flow_of_its_previous_owner(lab: fwlab.Lab) -> None:
    sender, receiver = lab.enis
    sync = FirewallSync(lab.fw, lab.cfg, table=lab.table)
    sync.set_desired({lab.vpc_id: {"sg-open": OPEN, "sg-closed": CLOSED}}, {})
    client = EniPort(sender.eni_id, lab.port(sender), sender.ip, sender.mac, ("sg-closed",))
    old_owner = EniPort(receiver.eni_id, lab.port(receiver), receiver.ip, receiver.mac, ("sg-open",))
    sync.add_eni(lab.vpc_id, client)
    sync.add_eni(lab.vpc_id, old_owner)

    listener = fwlab.sock_in(lab.tasks[1].fd, socket.SOCK_DGRAM)
    listener.bind(("0.0.0.0", PORT))
    listener.settimeout(0.5)
    stream = fwlab.sock_in(lab.tasks[0].fd, socket.SOCK_DGRAM)
    stream.bind(("0.0.0.0", 40000))  # one flow: same ports every time
    try:
        stream.sendto(b"allowed", (receiver.ip, PORT))
        data, peer = listener.recvfrom(64)
        assert data == b"allowed"
        listener.sendto(b"ack", peer)  # a reply: conntrack now calls the flow established
        stream.settimeout(0.5)
        assert stream.recv(64) == b"ack"
        assert entries(lab, receiver.ip) >= 1

        # The owner stops (its ENI unregistered), a new task in a closed group gets the same address.
        sync.remove_eni(lab.vpc_id, old_owner.eni_id)
        assert entries(lab, receiver.ip) == 0
        stream.sendto(b"while nobody owns it", (receiver.ip, PORT))  # would refresh a leftover entry
        time.sleep(0.05)
        successor = EniPort("eni-" + "5" * 17, lab.port(receiver), receiver.ip, receiver.mac, ("sg-closed",))
        sync.add_eni(lab.vpc_id, successor, new_network=True)
        listener.settimeout(0.05)
        with pytest.raises(TimeoutError):
            while True:  # drain: the datagram sent while nobody owned the address is not what we test
                listener.recv(64)
        stream.sendto(b"must not pass", (receiver.ip, PORT))
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.recv(64)
    finally:
        stream.close()
        listener.close()
