"""``netplan.assume_all`` (the data plane's known host after a plan, copied once per plan) gives what
``assume`` of each action in turn gives, for any sequence of actions."""

from __future__ import annotations

from functools import reduce

from hypothesis import given, settings, strategies as st

from taskvpc.agent import netplan
from taskvpc.agent.netplan import (
    Action,
    EnsureHostAccess,
    EnsureTaskNetwork,
    EnsureVpcRouter,
    NetConfig,
    ObservedNetwork,
    RemoveHostAccess,
    RemoveTaskNetwork,
    RemoveVpcRouter,
    TaskEni,
)
from taskvpc.agentapi.network import Subnet

CFG = NetConfig()
VPCS = ("vpc-0123456789abcdef0", "vpc-00000000000000002")
SUBNET = Subnet.of("subnet-0a", "172.31.0.0/20")


def _eni(n: int, key: int) -> TaskEni:
    return TaskEni(
        f"eni-{n:017x}", f"02:00:00:00:00:{n:02x}", f"172.31.0.{10 + n}", 20, "172.31.0.1", f"t{key}"
    )


_actions = st.one_of(
    st.builds(lambda v: EnsureVpcRouter(v, (SUBNET,)), st.sampled_from(VPCS)),
    st.builds(lambda v: EnsureHostAccess(v, (SUBNET.cidr_block,)), st.sampled_from(VPCS)),
    st.builds(RemoveHostAccess, st.sampled_from(VPCS)),
    st.builds(RemoveVpcRouter, st.sampled_from(VPCS)),
    st.builds(
        lambda v, n, k: EnsureTaskNetwork(v, _eni(n, k)),
        st.sampled_from(VPCS),
        st.integers(1, 6),
        st.integers(1, 6),
    ),
    st.builds(lambda k: RemoveTaskNetwork(f"t{k}"), st.integers(1, 6)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_actions, max_size=12), st.lists(_actions, max_size=25))
def test_assume_all_is_assume_of_each_in_turn(setup: list[Action], actions: list[Action]) -> None:
    start = reduce(lambda known, a: netplan.assume(CFG, known, a), setup, ObservedNetwork())
    one_by_one = reduce(lambda known, a: netplan.assume(CFG, known, a), actions, start)
    assert netplan.assume_all(CFG, start, actions) == one_by_one


def test_a_plan_of_removals_leaves_the_observation_it_started_from_alone() -> None:
    setup: list[Action] = [EnsureVpcRouter(VPCS[0], (SUBNET,))]
    setup += [EnsureTaskNetwork(VPCS[0], _eni(n, n)) for n in range(1, 6)]
    start = reduce(lambda known, a: netplan.assume(CFG, known, a), setup, ObservedNetwork())
    before = (dict(start.tasks), dict(start.routers[VPCS[0]].ports))
    after = netplan.assume_all(CFG, start, [RemoveTaskNetwork("t2"), RemoveTaskNetwork("t5")])
    assert set(after.tasks) == {"t1", "t3", "t4"} and len(after.routers[VPCS[0]].ports) == 3
    assert (dict(start.tasks), dict(start.routers[VPCS[0]].ports)) == before  # a new value, not an edit
