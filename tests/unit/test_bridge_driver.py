"""The bridge driver's pure parts: names, subnet choice, route collisions, addresses, NAT text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from taskvpc.agent.drivers import bridge
from taskvpc.agent.netplan import IFNAMSIZ, NetConfig, parse_netns
from taskvpc.agentapi.tasks import DesiredTask, PortBinding

CFG = NetConfig(prefix="tvpc")


@given(st.from_regex(r"[a-z][a-z0-9]{1,6}", fullmatch=True), st.from_regex(r"[0-9a-f]{32}", fullmatch=True))
def test_names_fit_and_are_ours(prefix: str, task_id: str) -> None:
    cfg = NetConfig(prefix=prefix)
    assert len(bridge.host_veth(cfg, task_id)) <= IFNAMSIZ
    assert len(bridge.bridge_name(cfg)) <= IFNAMSIZ
    assert parse_netns(cfg, bridge.task_netns(cfg, task_id)) == ("bridged", task_id)
    assert bridge.bridge_subnet(cfg).subnet_of(ipaddress.IPv4Network("10.254.0.0/16"))


def test_collision_names_the_overlapping_route_and_ignores_our_bridge() -> None:
    subnet = bridge.bridge_subnet(CFG)
    inside = str(subnet.network_address + 7)
    routes = [("default", "eth0"), ("172.31.0.0/16", "tvpch1"), (str(subnet), "tvpc-br")]
    assert bridge.collision(subnet, routes, "tvpc-br") is None
    assert bridge.collision(subnet, [*routes, ("10.0.0.0/8", "wg0")], "tvpc-br") == "10.0.0.0/8 dev wg0"
    assert bridge.collision(subnet, [(inside, "eth1")], "tvpc-br") == f"{inside} dev eth1"


def test_free_address_skips_the_gateway_and_used_ones() -> None:
    subnet = ipaddress.IPv4Network("10.254.9.0/24")
    assert bridge.free_address(subnet, []) == "10.254.9.2"
    assert bridge.free_address(subnet, ["10.254.9.2", "10.254.9.3"]) == "10.254.9.4"
    with pytest.raises(bridge.BridgeError):
        bridge.free_address(subnet, [str(h) for h in subnet.hosts()])


def test_nat_text_maps_every_local_address_and_replaces_elements() -> None:
    table = bridge.nft_table(CFG)
    assert "table ip tvpc_bridge" in table
    assert table.count("fib daddr type local dnat ip to tcp dport map @tcp_ports") == 2  # prerouting+output
    assert 'oifname "tvpc-br" ip saddr 127.0.0.0/8 masquerade' in table
    binds = [PortBinding(80, 8080), PortBinding(53, 50000, "udp")]
    add = bridge.element_commands(CFG, "10.254.1.2", binds, add=True).splitlines()
    assert add[:3] == [
        "add element ip tvpc_bridge tcp_ports { 8080 : 10.254.1.2 . 80 }",
        "delete element ip tvpc_bridge tcp_ports { 8080 }",
        "add element ip tvpc_bridge tcp_ports { 8080 : 10.254.1.2 . 80 }",
    ]
    remove = bridge.element_commands(CFG, "10.254.1.2", binds, add=False).splitlines()
    assert remove[-1] == "delete element ip tvpc_bridge udp_ports { 50000 }"


def test_port_bindings_travel_in_the_desired_task() -> None:
    doc = {
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef",
        "networkMode": "bridge",
        "portBindings": [
            {"containerPort": 80, "hostPort": 49153, "protocol": "tcp"},
            {"containerPort": 80, "hostPort": 0},  # not bound: dropped
            {"containerPort": "x"},
        ],
    }
    task = DesiredTask.from_wire(doc)
    assert task.port_bindings == (PortBinding(80, 49153),)
    assert DesiredTask.from_wire(task.to_wire()) == task
