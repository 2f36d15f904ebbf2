"""The pure data-plane planner: names, validation, plan (adopt / repair / remove) and apply."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent import netplan
from taskvpc.agent.netplan import (
    DesiredNetwork,
    DesiredTask,
    DesiredVpc,
    EnsureHostAccess,
    EnsureTaskNetwork,
    EnsureVpcRouter,
    NetConfig,
    ObservedHostAccess,
    ObservedNetwork,
    ObservedPort,
    ObservedRouter,
    ObservedTask,
    RemoveHostAccess,
    RemoveStray,
    RemoveTaskNetwork,
    RemoveVpcRouter,
    Stray,
    TaskEni,
)
from taskvpc.agentapi.network import Subnet

CFG = NetConfig()
VPC = "vpc-0123456789abcdef0"
VPC2 = "vpc-00000000000000002"
A = Subnet.of("subnet-0a", "172.31.0.0/20")
B = Subnet.of("subnet-0b", "172.31.16.0/20")


def eni(n: int, ip: str = "", gateway: str = "172.31.0.1", key: str = "") -> TaskEni:
    return TaskEni(
        eni_id=f"eni-{n:017x}",
        mac=f"02:00:00:00:00:{n:02x}",
        ip=ip or f"172.31.0.{10 + n}",
        prefix_len=20,
        gateway=gateway,
        task_key=key or f"task{n}",
    )


def desired(*enis: TaskEni, host: bool = True) -> DesiredNetwork:
    vpc = DesiredVpc(VPC, (A, B), (A.cidr_block, B.cidr_block) if host else ())
    return DesiredNetwork((vpc,), tuple(DesiredTask(VPC, e) for e in enis))


# -- a fake driver whose observation is exactly what it was told to make --------------------------


class FakeDriver:
    def __init__(self, cfg: NetConfig = CFG) -> None:
        self.cfg = cfg
        self.routers: dict[str, ObservedRouter] = {}
        self.tasks: dict[str, ObservedTask] = {}
        self.access: dict[str, ObservedHostAccess] = {}
        self.strays: list[Stray] = []
        self.calls: list[str] = []
        self.fail: set[str] = set()
        self._index = 10

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise RuntimeError(f"{name} failed")

    def observe(self) -> ObservedNetwork:
        return ObservedNetwork(dict(self.routers), dict(self.tasks), dict(self.access), tuple(self.strays))

    def ensure_vpc_router(self, vpc_id: str, subnets: Sequence[Subnet]) -> None:
        self._call(f"ensure_vpc_router {vpc_id}")
        old = self.routers.get(vpc_id)
        self.routers[vpc_id] = ObservedRouter(
            vpc_id,
            netplan.router_netns(self.cfg, vpc_id),
            True,
            frozenset(s.gateway for s in subnets),
            frozenset(s.cidr_block for s in subnets),
            dict(old.ports) if old else {},
            old.access_ok if old else False,
        )

    def remove_vpc_router(self, vpc_id: str) -> bool:
        self._call(f"remove_vpc_router {vpc_id}")
        return self.routers.pop(vpc_id, None) is not None

    def ensure_host_access(self, vpc_id: str, cidrs: Sequence[str]) -> None:
        self._call(f"ensure_host_access {vpc_id}")
        self.routers[vpc_id] = dataclasses.replace(self.routers[vpc_id], access_ok=True)
        self.access[vpc_id] = ObservedHostAccess(
            vpc_id, netplan.host_link(self.cfg, vpc_id), True, True, frozenset(cidrs)
        )

    def remove_host_access(self, vpc_id: str) -> bool:
        self._call(f"remove_host_access {vpc_id}")
        return self.access.pop(vpc_id, None) is not None

    def ensure_task_network(self, vpc_id: str, eni: TaskEni) -> None:
        self._call(f"ensure_task_network {eni.task_key}")
        router = self.routers[vpc_id]
        port = netplan.eni_port(self.cfg, eni.eni_id)
        self._index += 1
        ports = dict(router.ports)
        ports[port] = ObservedPort(port, self._index, eni.eni_id, True, frozenset({eni.ip}))
        self.routers[vpc_id] = dataclasses.replace(router, ports=ports)
        self.tasks[eni.task_key] = ObservedTask(
            eni.task_key,
            netplan.task_netns(self.cfg, eni.task_key),
            eni.mac,
            frozenset({eni.address}),
            eni.gateway,
            True,
            self._index,
            vpc_id,
            port,
        )

    def remove_task_network(
        self, task_key: str, vpc_id: str | None = None, port: str | None = None, ip: str | None = None
    ) -> bool:
        self._call(f"remove_task_network {task_key}")
        return self.tasks.pop(task_key, None) is not None

    def remove_stray(self, stray: Stray) -> bool:
        self._call(f"remove_stray {stray.name}")
        self.strays.remove(stray)
        return True


def converge(want: DesiredNetwork, drv: FakeDriver) -> list[netplan.Action]:
    actions = netplan.plan(CFG, want, drv.observe())
    report = netplan.apply(actions, drv)
    assert report.ok, report.failed
    return actions


# -- names ------------------------------------------------------------------------------------------


def test_names_fit_ifnamsiz_and_parse_back() -> None:
    longest = NetConfig(prefix="abcdefg")
    assert len(netplan.eni_port(longest, "eni-0123456789abcdef0")) == 15
    assert len(netplan.host_link(longest, VPC)) == 15
    assert len(netplan.router_access_port(longest)) <= 15
    assert netplan.eni_port(CFG, "eni-0123456789abcdef0") == "tvpc" + "0123456789abcdef0"[-11:]
    assert netplan.host_link(CFG, VPC) == "tvpch" + "0123456789abcdef0"[-10:]
    assert netplan.eni_port_re(CFG).fullmatch(netplan.eni_port(CFG, "eni-0123456789abcdef0"))
    assert not netplan.eni_port_re(CFG).fullmatch(netplan.router_access_port(CFG))
    assert netplan.parse_netns(CFG, netplan.router_netns(CFG, VPC)) == ("router", VPC)
    assert netplan.parse_netns(CFG, netplan.task_netns(CFG, "abc123")) == ("task", "abc123")
    assert netplan.parse_netns(CFG, "tvpc-zz") == ("stray", "tvpc-zz")
    assert netplan.parse_netns(CFG, "other-t-abc") is None
    assert netplan.parse_netns(CFG, "tvpcx-t-abc") is None  # another prefix that starts like ours


@pytest.mark.parametrize("prefix", ["", "t", "Tvpc", "tv-pc", "abcdefgh", "1abc"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        NetConfig(prefix=prefix)


def test_the_router_answers_on_the_gateways_it_is_sent() -> None:
    """The agent never derives a gateway: a subnet's router address is the one the control plane sent."""
    odd = Subnet("subnet-0z", "10.0.0.0/24", "10.0.0.254")
    vpc = DesiredVpc(VPC, (odd,))
    assert vpc.router_addrs == {"10.0.0.254"}
    task = TaskEni("eni-00000000000000001", "02:00:00:00:00:01", "10.0.0.5", 24, "10.0.0.254", "t1")
    drv = FakeDriver()
    converge(DesiredNetwork((vpc,), (DesiredTask(VPC, task),)), drv)
    assert drv.routers[VPC].router_addrs == {"10.0.0.254"} and drv.tasks["t1"].gateway == "10.0.0.254"
    with pytest.raises(ValueError, match="fits no subnet"):  # a .1 gateway the subnet does not have
        DesiredNetwork((vpc,), (DesiredTask(VPC, dataclasses.replace(task, gateway="10.0.0.1")),))
    outside, network_address, too_small = (
        Subnet("s", "10.0.0.0/24", "10.1.0.1"),
        Subnet("s", "10.0.0.0/24", "10.0.0.0"),
        Subnet("s", "10.0.0.0/29", "10.0.0.1"),
    )
    for bad in (outside, network_address, too_small):
        with pytest.raises(ValueError):
            DesiredVpc(VPC, (bad,))


@pytest.mark.parametrize(
    "changes",
    [
        {"mac": "02:00:00:00:00:0G"},
        {"mac": "03:00:00:00:00:01"},  # multicast
        {"mac": "02:AA:00:00:00:01"},  # upper case: the kernel reports lower case
        {"gateway": "172.31.32.1"},  # outside the prefix
        {"gateway": "172.31.0.11"},  # the task's own address
        {"task_key": "../etc"},
        {"eni_id": "eni-xyz"},
    ],
)
def test_task_eni_validation(changes: dict[str, str]) -> None:
    fields = dataclasses.asdict(eni(1))
    fields.update(changes)
    with pytest.raises(ValueError):
        TaskEni(**fields)  # type: ignore[arg-type]


def test_desired_network_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="not desired"):
        DesiredNetwork((), (DesiredTask(VPC, eni(1)),))
    with pytest.raises(ValueError, match="fits no subnet"):
        desired(eni(1, ip="172.31.16.5", gateway="172.31.16.2"))
    with pytest.raises(ValueError, match="fits no subnet"):
        desired(eni(1, ip="10.0.0.5", gateway="10.0.0.1"))
    with pytest.raises(ValueError, match="twice"):
        desired(eni(1), eni(2, key="task1"))


# -- plan -------------------------------------------------------------------------------------------


def test_empty_host_gets_router_then_access_then_tasks() -> None:
    e1, e2 = eni(1), eni(2, ip="172.31.16.9", gateway="172.31.16.1")
    actions = netplan.plan(CFG, desired(e1, e2), ObservedNetwork())
    assert actions == [
        EnsureVpcRouter(VPC, (A, B)),
        EnsureHostAccess(VPC, (A.cidr_block, B.cidr_block)),
        EnsureTaskNetwork(VPC, e1),
        EnsureTaskNetwork(VPC, e2),
    ]


def test_matching_state_is_adopted_with_no_action() -> None:
    drv = FakeDriver()
    want = desired(eni(1), eni(2))
    converge(want, drv)
    assert netplan.plan(CFG, want, drv.observe()) == []


def test_undesired_things_are_removed_tasks_first_router_last() -> None:
    drv = FakeDriver()
    converge(desired(eni(1), eni(2)), drv)
    drv.strays.append(Stray("netns", "tvpc-junk"))
    actions = netplan.plan(CFG, DesiredNetwork(), drv.observe())
    port1, port2 = netplan.eni_port(CFG, eni(1).eni_id), netplan.eni_port(CFG, eni(2).eni_id)
    assert actions == [
        RemoveTaskNetwork("task1", VPC, port1, "172.31.0.11"),
        RemoveTaskNetwork("task2", VPC, port2, "172.31.0.12"),
        RemoveStray(Stray("netns", "tvpc-junk")),
        RemoveHostAccess(VPC),
        RemoveVpcRouter(VPC),
    ]


def test_a_task_that_differs_is_repaired_not_recreated() -> None:
    drv = FakeDriver()
    want = desired(eni(1), eni(2))
    converge(want, drv)
    broken = {
        "mac": dataclasses.replace(drv.tasks["task1"], mac="02:00:00:00:00:99"),
        "addr": dataclasses.replace(drv.tasks["task1"], addrs=frozenset({"172.31.0.11/24"})),
        "gateway": dataclasses.replace(drv.tasks["task1"], gateway=None),
        "down": dataclasses.replace(drv.tasks["task1"], up=False),
        "peer": dataclasses.replace(drv.tasks["task1"], peer_index=999),
        "unmatched": dataclasses.replace(drv.tasks["task1"], vpc_id=None, port=None),
    }
    for what, task in broken.items():
        observed = dataclasses.replace(drv.observe(), tasks={**drv.tasks, "task1": task})
        assert netplan.plan(CFG, want, observed) == [EnsureTaskNetwork(VPC, eni(1))], what


def test_router_side_damage_is_repaired() -> None:
    drv = FakeDriver()
    want = desired(eni(1))
    converge(want, drv)
    router = drv.routers[VPC]
    port = netplan.eni_port(CFG, eni(1).eni_id)
    no_route = {**router.ports, port: dataclasses.replace(router.ports[port], routes=frozenset())}
    observed = dataclasses.replace(drv.observe(), routers={VPC: dataclasses.replace(router, ports=no_route)})
    assert netplan.plan(CFG, want, observed) == [EnsureTaskNetwork(VPC, eni(1))]
    other_owner = {
        **router.ports,
        port: dataclasses.replace(router.ports[port], eni_id="eni-00000000000000099"),
    }
    observed = dataclasses.replace(
        drv.observe(), routers={VPC: dataclasses.replace(router, ports=other_owner)}
    )
    assert netplan.plan(CFG, want, observed) == [EnsureTaskNetwork(VPC, eni(1))]
    no_fwd = dataclasses.replace(drv.observe(), routers={VPC: dataclasses.replace(router, forwarding=False)})
    assert netplan.plan(CFG, want, no_fwd) == [EnsureVpcRouter(VPC, (A, B))]


def test_subnet_added_later_ensures_the_router_again() -> None:
    drv = FakeDriver()
    one = DesiredNetwork((DesiredVpc(VPC, (A,)),))
    converge(one, drv)
    two = DesiredNetwork((DesiredVpc(VPC, (A, B)),))
    assert netplan.plan(CFG, two, drv.observe()) == [EnsureVpcRouter(VPC, (A, B))]


def test_host_access_follows_the_desired_cidrs() -> None:
    drv = FakeDriver()
    converge(desired(), drv)
    assert netplan.plan(CFG, desired(host=False), drv.observe()) == [RemoveHostAccess(VPC)]
    narrower = DesiredNetwork((DesiredVpc(VPC, (A, B), (A.cidr_block,)),))
    assert netplan.plan(CFG, narrower, drv.observe()) == [EnsureHostAccess(VPC, (A.cidr_block,))]
    lost = dataclasses.replace(
        drv.observe(), routers={VPC: dataclasses.replace(drv.routers[VPC], access_ok=False)}
    )
    assert netplan.plan(CFG, desired(), lost) == [EnsureHostAccess(VPC, (A.cidr_block, B.cidr_block))]


def test_a_task_seen_in_another_vpc_is_removed_then_made_again() -> None:
    drv = FakeDriver()
    other = DesiredVpc(VPC2, (Subnet.of("subnet-0c", "10.9.0.0/16"),))
    moved = TaskEni("eni-00000000000000001", "02:00:00:00:00:01", "10.9.0.5", 16, "10.9.0.1", "task1")
    converge(DesiredNetwork((DesiredVpc(VPC, (A,)), other), (DesiredTask(VPC2, moved),)), drv)
    want = DesiredNetwork((DesiredVpc(VPC, (A,)), other), (DesiredTask(VPC, eni(1)),))
    actions = netplan.plan(CFG, want, drv.observe())
    assert actions[0] == RemoveTaskNetwork("task1", VPC2, netplan.eni_port(CFG, moved.eni_id), "10.9.0.5")
    assert actions[-1] == EnsureTaskNetwork(VPC, eni(1))


# -- apply ------------------------------------------------------------------------------------------


def test_apply_keeps_going_after_an_error_and_reports_it() -> None:
    drv = FakeDriver()
    converge(desired(eni(1)), drv)
    drv.fail.add("remove_task_network task1")
    actions = netplan.plan(CFG, DesiredNetwork(), drv.observe())
    report = netplan.apply(actions, drv)
    assert not report.ok
    assert [a for a, _ in report.failed] == [actions[0]]
    assert "failed" in str(report.failed[0][1])
    assert report.done == actions[1:]  # host access and router still went


def test_convergence_from_any_mix() -> None:
    drv = FakeDriver()
    converge(desired(eni(1), eni(2), eni(3)), drv)
    converge(desired(eni(2), eni(4)), drv)
    assert sorted(drv.tasks) == ["task2", "task4"]
    assert netplan.plan(CFG, desired(eni(2), eni(4)), drv.observe()) == []


@settings(max_examples=60, deadline=None)
@given(
    first=st.sets(st.integers(1, 12), max_size=8),
    second=st.sets(st.integers(1, 12), max_size=8),
    host=st.booleans(),
)
def test_plan_then_apply_always_converges(first: set[int], second: set[int], host: bool) -> None:
    drv = FakeDriver()
    converge(desired(*(eni(n) for n in sorted(first))), drv)
    want = desired(*(eni(n) for n in sorted(second)), host=host)
    converge(want, drv)
    assert netplan.plan(CFG, want, drv.observe()) == []
    assert set(drv.tasks) == {f"task{n}" for n in second}


# -- the reconciler's known host, and what it leaves alone ------------------------------------------


@pytest.mark.parametrize(
    "want",
    [desired(eni(1), eni(2)), desired(eni(1), host=False), DesiredNetwork(), desired()],
)
def test_the_host_assumed_after_a_plan_needs_no_second_plan(want: DesiredNetwork) -> None:
    drv = FakeDriver()
    converge(
        DesiredNetwork((DesiredVpc(VPC2, (Subnet.of("subnet-0c", "10.9.0.0/16"),), ("10.9.0.0/16",)),)), drv
    )
    drv.strays.append(Stray("netns", "tvpc-junk"))
    known = drv.observe()
    actions = netplan.plan(CFG, want, known)
    assert actions
    for action in actions:
        known = netplan.assume(CFG, known, action)
    assert netplan.plan(CFG, want, known) == []  # what the reconciler believes ...
    assert netplan.apply(actions, drv).ok
    assert netplan.plan(CFG, want, drv.observe()) == []  # ... is what the host has


def test_kept_tasks_and_vpcs_stay_until_released() -> None:
    drv = FakeDriver()
    converge(desired(eni(1)), drv)
    assert netplan.plan(CFG, DesiredNetwork(keep=frozenset({"task1"})), drv.observe()) == []
    seen = drv.observe().tasks["task1"]
    quiet = DesiredNetwork(keep_vpcs=frozenset({VPC}))  # the answer still lists the VPC: keep its router
    assert netplan.plan(CFG, quiet, drv.observe()) == [
        RemoveTaskNetwork("task1", VPC, seen.port, "172.31.0.11")
    ]
    assert netplan.plan(CFG, DesiredNetwork(), drv.observe())[-2:] == [
        RemoveHostAccess(VPC),
        RemoveVpcRouter(VPC),
    ]


def test_a_failed_action_does_not_stop_the_others_and_hooks_run_around_each() -> None:
    drv = FakeDriver()
    drv.fail.add("ensure_task_network task1")
    seen: list[str] = []
    actions = netplan.plan(CFG, desired(eni(1), eni(2)), drv.observe())
    report = netplan.apply(
        actions,
        drv,
        before=lambda a: seen.append("before " + type(a).__name__),
        after=lambda a: seen.append("after " + type(a).__name__),
    )
    assert [type(a).__name__ for a, _ in report.failed] == ["EnsureTaskNetwork"]
    assert seen.count("before EnsureTaskNetwork") == 2 and seen.count("after EnsureTaskNetwork") == 1
    assert "task2" in drv.tasks and "task1" not in drv.tasks

    def refuse(action: netplan.Action) -> None:
        if isinstance(action, EnsureTaskNetwork):
            raise RuntimeError("no rules, no network")

    drv2 = FakeDriver()
    report = netplan.apply(netplan.plan(CFG, desired(eni(3)), drv2.observe()), drv2, before=refuse)
    assert not drv2.tasks and len(report.failed) == 1  # never a veth without its rules
