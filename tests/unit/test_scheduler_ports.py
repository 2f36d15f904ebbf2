"""Host ports of bridge/host tasks (taskvpc.scheduler.ports) and RESOURCE:PORTS in placement."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, strategies as st

from taskvpc.scheduler import InstanceSnapshot, TaskRequest, place
from taskvpc.scheduler.ports import DYNAMIC_RANGE, HostPorts, PortNeeds, bind, conflict, port_needs

ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/default/"


def web(*mappings: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "web", "portMappings": list(mappings)}]


def test_needs_by_network_mode() -> None:
    containers = web({"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "udp"})
    assert port_needs("bridge", containers) == PortNeeds(frozenset({("tcp", 8080)}), ("udp",))
    assert port_needs("host", web({"containerPort": 80})) == PortNeeds(frozenset({("tcp", 80)}))
    assert not port_needs("awsvpc", containers) and not port_needs("none", [])
    assert not port_needs("bridge", web({"containerPortRange": "8000-8010"}))  # recorded only


def test_static_conflict_names_the_protocols_resource() -> None:
    held = HostPorts()
    held.add("tcp", 8080)
    held.add("udp", 53)
    assert conflict(PortNeeds(frozenset({("tcp", 8080)})), held) == "PORTS"
    assert conflict(PortNeeds(frozenset({("udp", 53)})), held) == "PORTS_UDP"
    assert conflict(PortNeeds(frozenset({("udp", 8080), ("tcp", 53)})), held) is None


def test_dynamic_ports_are_the_lowest_free_of_the_range() -> None:
    held = HostPorts()
    held.add("tcp", DYNAMIC_RANGE[0])
    bindings = bind("bridge", web({"containerPort": 80}, {"containerPort": 81, "hostPort": 9000}), held)
    assert bindings == [
        [
            {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": DYNAMIC_RANGE[0] + 1, "protocol": "tcp"},
            {"bindIP": "0.0.0.0", "containerPort": 81, "hostPort": 9000, "protocol": "tcp"},
        ]
    ]
    assert held.holds("tcp", DYNAMIC_RANGE[0] + 1) and held.holds("tcp", 9000)
    assert bind("awsvpc", web({"containerPort": 80}), held) == [[]]


@given(st.lists(st.sampled_from([0, 80, 8080, 49153, 49154]), min_size=1, max_size=6), st.integers(1, 4))
def test_bound_ports_never_collide(host_ports: list[int], tasks: int) -> None:
    held = HostPorts()
    containers = web(
        *({"containerPort": 1000 + i, "hostPort": p} for i, p in enumerate(host_ports) if p == 0)
    )
    seen: set[int] = set()
    for _ in range(tasks):
        for bound in bind("bridge", containers, held):
            for binding in bound:
                assert binding["hostPort"] not in seen
                seen.add(binding["hostPort"])
                assert DYNAMIC_RANGE[0] <= binding["hostPort"] <= DYNAMIC_RANGE[1]


def instance(name: str, *tcp: int) -> InstanceSnapshot:
    held = HostPorts()
    for port in tcp:
        held.add("tcp", port)
    return InstanceSnapshot(
        arn=ARN + name,
        instance_id="i-" + name,
        availability_zone="us-east-1a",
        remaining={"CPU": 4096, "MEMORY": 8192},
        task_eni_free=0,
        ports=held,
    )


def test_placement_fails_on_a_held_static_port_and_charges_its_own() -> None:
    need = TaskRequest(cpu=10, memory=10, needs_eni=False, ports=PortNeeds(frozenset({("tcp", 8080)})))
    busy = place(need, [instance("a", 22, 8080)], random.Random(0))
    assert busy.assignments == ()
    assert [f.to_api() for f in busy.failures] == [{"arn": ARN + "a", "reason": "RESOURCE:PORTS"}]
    two = place(
        TaskRequest(**{**_fields(need), "count": 2}), [instance("a"), instance("b")], random.Random(0)
    )
    assert sorted(two.assignments) == [ARN + "a", ARN + "b"]  # never two 8080s on one instance
    three = place(TaskRequest(**{**_fields(need), "count": 3}), [instance("a")], random.Random(0))
    assert len(three.assignments) == 1
    assert [f.reason for f in three.failures] == ["RESOURCE:PORTS"]
    udp = TaskRequest(cpu=10, memory=10, needs_eni=False, ports=PortNeeds(frozenset({("udp", 8080)})))
    assert place(udp, [instance("a", 8080)], random.Random(0)).assignments == (ARN + "a",)


def _fields(request: TaskRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in request.__slots__}  # type: ignore[attr-defined]
