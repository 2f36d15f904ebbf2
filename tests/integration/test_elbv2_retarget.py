"""A target change reaches only the agent running the load balancer, answered with that load balancer alone
(control/elbv2/retarget.py), over the real agent API (SQLite and PostgreSQL).

Merged into the agent's copy, the short answer is the state a full answer gives; anything the shortcut
cannot vouch for (a task change in between, an agent that does not merge keyed entries, one whose digests
are not the server's last answer) gets the usual delta."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, UPDATES, Delta, digests_of, encode_have, merge
from taskvpc.agentapi.loadbalancers import LOAD_BALANCERS
from tests.integration.ecs_support import awsvpc, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer
from tests.integration.test_elbv2 import _alb, _network, _tg


class Holder:
    """An agent's copy of its desired state, kept as the real agent keeps it (agent/desiredview.py)."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        first = self._get("after=-1&wait=0")
        self.state, self.digests = DesiredState.from_wire(first), digests_of(first)

    def _get(self, query: str) -> dict[str, Any]:
        return self.agent.request("GET", f"/instances/{self.agent.id}/desired", query=query)

    def poll(self, keyed: bool = True, have: dict[str, str] | None = None) -> dict[str, Any]:
        generation = self.state.generation
        params = {"after": generation, "wait": 0, "since": generation}
        params["have"] = encode_have(self.digests if have is None else have)
        if keyed:
            params["keyed"] = "loadBalancers"
        doc = self._get(urlencode(params))
        assert doc[DELTA] is True
        merged = merge(self.state, Delta.from_wire(doc))
        assert merged is not None
        self.state, self.digests = merged, digests_of(doc)
        return doc

    def same_as_full(self) -> None:
        full = DesiredState.from_wire(self._get("after=-1&wait=0"))
        assert self.state.generation == full.generation
        for key, value in full.sections.items():
            if key != "credentials":
                assert self.state.sections[key] == value, key


def _targets(state: DesiredState, lb_arn: str) -> dict[str, list[tuple[str, str]]]:
    [lb] = [lb for lb in state[LOAD_BALANCERS] if lb.arn == lb_arn]
    return {g.arn: sorted((t.ip, t.state) for t in g.targets) for g in lb.target_groups}


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def test_a_target_change_wakes_only_the_runner_and_sends_only_its_load_balancer(
    elbv2: Any, ec2: Any, ecs: Any, agents: Callable[..., FakeAgent]
) -> None:
    net = _network(ec2)
    first, second = agents(), agents()
    for agent in (first, second):
        agent.register()
        agent.poll()
    lbs = [_alb(elbv2, net, name) for name in ("one", "two")]
    groups = [_tg(elbv2, net, f"tg-{i}") for i in range(2)]
    for lb, tg in zip(lbs, groups, strict=True):
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
    elbv2.modify_target_group_attributes(
        TargetGroupArn=groups[0]["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "0"}],
    )
    holders = [Holder(first), Holder(second)]  # placement happens here: one agent runs both (the first)
    runner, idle = (holders[0], holders[1]) if holders[0].state[LOAD_BALANCERS] else (holders[1], holders[0])
    assert len(runner.state[LOAD_BALANCERS]) == 2 and idle.state[LOAD_BALANCERS] == ()
    runner.poll(keyed=True)  # an answer of the usual kind: the server now knows what the runner holds
    idle_generation = idle.state.generation

    one, tg = lbs[0]["LoadBalancerArn"], groups[0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.1.7"}, {"Id": "10.20.2.9"}])
    doc = runner.poll()
    assert doc["changed"] is True and UPDATES in doc and LOAD_BALANCERS.key not in doc
    assert [e["loadBalancerArn"] for e in doc[UPDATES][LOAD_BALANCERS.key]] == [one]
    assert doc["tasks"] == [] and doc["removedTasks"] == [] and "securityGroups" not in doc
    assert _targets(runner.state, one)[tg] == [("10.20.1.7", "initial"), ("10.20.2.9", "initial")]
    runner.same_as_full()  # the merged copy is the full state, digests included
    assert runner.digests == digests_of(runner._get("after=-1&wait=0"))

    elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    doc = runner.poll()
    assert [e["loadBalancerArn"] for e in doc[UPDATES][LOAD_BALANCERS.key]] == [one]
    assert _targets(runner.state, one)[tg] == [("10.20.1.7", "initial")]
    runner.same_as_full()

    # Two changes before the poll: both in one short answer.
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    elbv2.register_targets(TargetGroupArn=groups[1]["TargetGroupArn"], Targets=[{"Id": "10.20.1.8"}])
    doc = runner.poll()
    assert sorted(e["loadBalancerArn"] for e in doc[UPDATES][LOAD_BALANCERS.key]) == sorted(
        lb["LoadBalancerArn"] for lb in lbs
    )
    runner.same_as_full()

    # The other agent was never woken by these: its generation did not move.
    assert idle.poll()["changed"] is False and idle.state.generation == idle_generation

    # A registration that changes nothing (already registered) bumps nothing either.
    generation = runner.state.generation
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    assert runner.poll()["changed"] is False and runner.state.generation == generation

    # An agent that does not merge keyed entries gets the section whole.
    elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    doc = runner.poll(keyed=False)
    assert UPDATES not in doc and len(doc[LOAD_BALANCERS.key]) == 2
    runner.same_as_full()

    # Digests that are not the server's last answer: the usual delta.
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    doc = runner.poll(have={**runner.digests, LOAD_BALANCERS.key: "0" * 16})
    assert UPDATES not in doc and len(doc[LOAD_BALANCERS.key]) == 2
    runner.same_as_full()

    # A task change between two target changes: the usual delta, which carries it.
    register_web(ecs)
    elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    [task] = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(net["a"], groups=[net["sg"]]))[
        "tasks"
    ]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": "10.20.2.9"}])
    holder_of_task = runner if task["containerInstanceArn"] == runner.agent.arn else idle
    doc = holder_of_task.poll()
    assert UPDATES not in doc and [t["taskArn"] for t in doc["tasks"]] == [task["taskArn"]]
    for holder in holders:
        holder.poll()
        holder.same_as_full()


def test_a_load_balancer_without_a_recorded_runner_wakes_the_region(
    elbv2: Any, ec2: Any, agents: Callable[..., FakeAgent]
) -> None:
    """Placement happens in the answer; until an agent was answered, a target change wakes every agent."""
    net = _network(ec2)
    agent = agents()
    agent.register()
    agent.poll()
    lb = _alb(elbv2, net)
    tg = _tg(elbv2, net)
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    generation = agent.generation
    elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "10.20.1.7"}])
    answer = agent.poll()
    assert answer["generation"] > generation
    [desired] = DesiredState.from_wire(answer)[LOAD_BALANCERS]
    assert [t.ip for g in desired.target_groups for t in g.targets] == ["10.20.1.7"]
