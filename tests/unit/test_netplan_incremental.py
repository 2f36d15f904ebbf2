"""A reconcile plans only the tasks whose wish changed since the last plan (``netplan.plan``'s ``only``):
a task start or stop on a host of many tasks does not look at all of them, and the host ends up as a
plan of every task would have left it. A full plan still runs when the host is observed again."""

from __future__ import annotations

from dataclasses import replace
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent import netplan
from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.netplan import DesiredNetwork, ObservedNetwork, ObservedTask
from tests.unit.test_agent_dataplane import CFG, Loader, run, task
from tests.unit.test_netplan import VPC, VPC2, FakeDriver, converge, desired, eni
from tests.unit.test_netplan_assume_all import _actions as _assume_actions

HOST = 40


class PlanCounter:
    """How many tasks the planner compared against the host (``netplan.task_matches`` calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        matches = netplan.task_matches

        def counted(*args: Any, **kwargs: Any) -> bool:
            self.calls += 1
            return matches(*args, **kwargs)

        monkeypatch.setattr(netplan, "task_matches", counted)


def test_a_start_and_a_stop_plan_that_task_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        for n in range(2, 2 + HOST):
            plane.want(task(n))
        await plane.reconcile()  # the first plan looks at every task
        assert len(driver.tasks) == HOST and plane.planned_tasks == HOST
        counter = PlanCounter(monkeypatch)
        calls, planned = len(driver.calls), plane.planned_tasks
        await plane.ensure_task(task(200))
        assert counter.calls == 1 and plane.planned_tasks == planned + 1, "one task planned, not the host"
        assert driver.calls[calls:] == ["ensure_task_network t200"]
        await plane.remove_task("t5")
        assert counter.calls == 1 and plane.planned_tasks == planned + 1  # (removed: nothing to match)
        assert driver.calls[calls + 1 :] == ["remove_task_network t5"]
        await plane.reconcile()  # nothing changed: nothing planned, nothing done
        assert counter.calls == 1 and len(driver.calls) == calls + 2

        plane.known = None  # observed again (as after a failure): every task planned, nothing to do
        await plane.reconcile()
        assert counter.calls == 1 + HOST and len(driver.calls) == calls + 2
        assert set(driver.tasks) == {f"t{n}" for n in range(2, 2 + HOST) if n != 5} | {"t200"}

    run(body)


def test_a_failed_plan_makes_the_next_one_look_at_every_task(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        for n in range(2, 12):
            plane.want(task(n))
        await plane.reconcile()
        del driver.tasks["t3"]  # someone removed a task's namespace behind the agent's back
        driver.fail.add("ensure_task_network t20")
        plane.want(task(20))
        await plane.reconcile()
        assert "t20" in plane.failures and "t3" not in driver.tasks  # (the host is not observed yet)
        driver.fail.clear()
        counter = PlanCounter(monkeypatch)
        await plane.reconcile()  # observes the host: every task planned, t3 made again
        assert counter.calls == 11 and "t3" in driver.tasks and "t20" in driver.tasks
        assert not plane.failures

    run(body)


def test_a_task_whose_eni_fits_no_subnet_keeps_its_failure_while_others_change() -> None:
    async def body(plane: DataPlane, driver: FakeDriver, loader: Loader) -> None:
        bad = task(7)
        assert bad.eni is not None
        plane.want(replace(bad, eni=replace(bad.eni, private_ipv4_address="not-an-address")))
        await plane.reconcile()
        assert "t7" in plane.failures and "t7" not in driver.tasks
        await plane.ensure_task(task(8))  # a plan of t8 alone
        assert "t7" in plane.failures and "t8" in driver.tasks

    run(body)


# -- the planner: a plan of some tasks is the full plan's actions for them ------------------------------

_TASK_KEYS = [f"task{n}" for n in range(1, 9)]


def _key_of(action: netplan.Action) -> str | None:
    if isinstance(action, netplan.EnsureTaskNetwork):
        return action.eni.task_key
    if isinstance(action, netplan.RemoveTaskNetwork):
        return action.task_key
    return None


@settings(max_examples=120, deadline=None)
@given(
    made=st.sets(st.integers(1, 8), max_size=8),
    wanted=st.sets(st.integers(1, 8), max_size=8),
    kept=st.sets(st.integers(1, 8), max_size=3),
    broken=st.sets(st.integers(1, 8), max_size=3),
    only=st.sets(st.sampled_from(_TASK_KEYS), max_size=8),
    other_vpc=st.booleans(),
)
def test_a_plan_of_some_tasks_is_the_full_plan_s_actions_for_them(
    made: set[int], wanted: set[int], kept: set[int], broken: set[int], only: set[str], other_vpc: bool
) -> None:
    drv = FakeDriver()
    converge(desired(*(eni(n) for n in sorted(made))), drv)
    for n in broken & made:  # a task's network not as made: the plan repairs it
        drv.tasks[f"task{n}"] = ObservedTask(f"task{n}", netplan.task_netns(CFG, f"task{n}"))
    if other_vpc:
        drv.routers[VPC2] = netplan.ObservedRouter(VPC2, netplan.router_netns(CFG, VPC2), True, frozenset(),
                                                   frozenset())  # fmt: skip
    observed: ObservedNetwork = drv.observe()
    full = desired(*(eni(n) for n in sorted(wanted)))
    full = DesiredNetwork(full.vpcs, full.tasks, frozenset(f"task{n}" for n in kept - wanted))
    everything = netplan.plan(CFG, full, observed)
    some = netplan.plan(CFG, full, observed, only)
    assert some == [a for a in everything if _key_of(a) is None or _key_of(a) in only]
    held_only = DesiredNetwork(
        full.vpcs, tuple(t for t in full.tasks if t.eni.task_key in only), full.keep, full.keep_vpcs
    )
    assert netplan.plan(CFG, held_only, observed, only) == some  # the others need not be held at all


def test_the_planner_s_only_leaves_a_host_of_many_tasks_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    drv = FakeDriver()
    converge(desired(*(eni(n) for n in range(1, 60))), drv)
    counter = PlanCounter(monkeypatch)
    assert netplan.plan(CFG, desired(eni(60)), drv.observe(), {"task60"}) == [
        netplan.EnsureTaskNetwork(VPC, eni(60))
    ]
    assert counter.calls == 1


# -- the known host after plan upon plan: the highest port index carried over, not scanned for ---------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_assume_actions, max_size=8), max_size=6))
def test_plans_in_turn_leave_what_assume_of_each_action_leaves(plans: list[list[netplan.Action]]) -> None:
    by_plan = by_action = ObservedNetwork()
    for actions in plans:
        by_plan = netplan.assume_all(CFG, by_plan, actions)
        by_action = reduce(lambda known, a: netplan.assume(CFG, known, a), actions, by_action)
        assert by_plan == by_action
        indexes = [p.index for r in by_plan.routers.values() for p in r.ports.values()]
        assert by_plan.top_index is None or by_plan.top_index >= max(indexes, default=1)


def test_a_plan_of_one_task_does_not_scan_the_router_s_ports() -> None:
    routers = {
        VPC: netplan.ObservedRouter(VPC, netplan.router_netns(CFG, VPC), True, frozenset(), frozenset())
    }
    known = netplan.assume_all(
        CFG, ObservedNetwork(routers), [netplan.EnsureTaskNetwork(VPC, eni(n)) for n in range(1, 60)]
    )
    assert known.top_index is not None

    class Unscannable(dict):  # type: ignore[type-arg]
        def values(self) -> Any:
            raise AssertionError("every port scanned")

        def items(self) -> Any:
            raise AssertionError("every port scanned")

    router = known.routers[VPC]
    guarded = replace(known, routers={VPC: replace(router, ports=Unscannable(router.ports))})
    after = netplan.assume_all(CFG, guarded, [netplan.EnsureTaskNetwork(VPC, eni(60))])
    assert after.tasks["task60"].peer_index == known.top_index + 1
