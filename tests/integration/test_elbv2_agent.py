"""The agent's side of ELBv2 through the real API: placement, the ``loadBalancers`` section, health reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskvpc.agentapi.answer import SECURITY_GROUPS
from taskvpc.agentapi.loadbalancers import LOAD_BALANCERS, TargetHealthEntry, TargetHealthReport
from tests.integration.fake_agent import AgentError, FakeAgent
from tests.integration.server import InProcessServer
from tests.integration.test_elbv2 import _alb, _network, _tg


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _health(elbv2: Any, tg_arn: str) -> dict[str, dict[str, str]]:
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"] for d in found}


def _send(agent: FakeAgent, *entries: TargetHealthEntry | dict[str, Any]) -> dict[str, Any]:
    items = [e if isinstance(e, dict) else e.to_wire() for e in entries]
    return agent.request("POST", f"/instances/{agent.id}/target-health", {"targets": items})


def test_one_agent_runs_the_lb_and_its_health_reports_reach_describe_target_health(
    elbv2: Any, ec2: Any, agents: Callable[..., FakeAgent]
) -> None:
    net = _network(ec2)
    first, second = agents(), agents()
    first.register()
    second.register()
    first.poll()
    second.poll()
    lb = _alb(elbv2, net)
    tg = _tg(
        elbv2,
        net,
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,
        HealthCheckPath="/ping",
        Matcher={"HttpCode": "200-299"},
    )
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    elbv2.register_targets(
        TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "10.20.1.7"}, {"Id": "10.20.2.9"}]
    )

    # Exactly one of the two agents gets the LB, always the same one (recorded), woken by the writes.
    before = first.generation
    first.poll(after=before, wait=0)
    second.poll()
    assert first.state is not None and second.state is not None
    sections = [first.state[LOAD_BALANCERS], second.state[LOAD_BALANCERS]]
    assert sorted(len(s) for s in sections) == [0, 1]
    runner, idle = (first, second) if sections[0] else (second, first)
    assert runner.state is not None
    [desired] = runner.state[LOAD_BALANCERS]
    assert desired.arn == lb["LoadBalancerArn"] and desired.type == "application"
    assert sorted(e.subnet_id for e in desired.enis) == sorted([net["a"], net["b"]])
    assert all(e.security_group_ids == (net["sg"],) for e in desired.enis)
    assert {s.subnet_id for s in desired.vpc.subnets} == {net["a"], net["b"], net["a2"]}  # the whole VPC
    assert [li["Port"] for li in desired.listeners] == [80]
    assert [r["Priority"] for r in desired.rules] == ["default"]
    [group] = desired.target_groups
    assert (group.arn, group.health_check.path, group.health_check.interval) == (
        tg["TargetGroupArn"],
        "/ping",
        5,
    )
    assert group.health_check.matcher == "200-299"
    assert sorted((t.ip, t.state) for t in group.targets) == [
        ("10.20.1.7", "initial"),
        ("10.20.2.9", "initial"),
    ]
    assert runner.state is not None
    assert net["sg"] in {g.group_id for g in runner.state[SECURITY_GROUPS]}  # enforced on the LB's ENIs

    # The runner's verdicts become DescribeTargetHealth's; the other agent's are ignored.
    arn = tg["TargetGroupArn"]
    assert _send(idle, TargetHealthEntry(arn, "10.20.1.7", 8080, "healthy")) == {"recorded": 0}
    assert _health(elbv2, arn)["10.20.1.7"]["State"] == "initial"
    answer = _send(
        runner,
        TargetHealthEntry(arn, "10.20.1.7", 8080, "healthy"),
        TargetHealthEntry(arn, "10.20.2.9", 8080, "unhealthy", "Target.ResponseCodeMismatch", "500"),
    )
    assert answer == {"recorded": 2}
    seen = _health(elbv2, arn)
    assert seen["10.20.1.7"] == {"State": "healthy"}
    assert seen["10.20.2.9"] == {
        "State": "unhealthy",
        "Reason": "Target.ResponseCodeMismatch",
        "Description": "Health checks failed with these codes: [500]",
    }

    # A malformed report, or one naming a reason ELB does not have, is refused whole.
    for bad in (
        {"targetGroupArn": arn, "id": "10.20.1.7", "port": 0, "state": "healthy"},
        {"targetGroupArn": arn, "id": "10.20.1.7", "port": 8080, "state": "draining", "reason": None},
        {"targetGroupArn": arn, "id": "10.20.1.7", "port": 8080, "state": "unhealthy", "reason": "Made.Up"},
    ):
        with pytest.raises(AgentError) as excinfo:
            _send(runner, TargetHealthEntry(arn, "10.20.2.9", 8080, "healthy"), bad)
        assert excinfo.value.status == 400
    assert _health(elbv2, arn)["10.20.2.9"]["State"] == "unhealthy"  # nothing changed
    assert TargetHealthReport.from_wire({"targets": [bad]}).targets[0].reason == "Made.Up"

    # Deleting the LB takes it out of the runner's section at once.
    elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    runner.poll(wait=0)
    assert runner.state is not None and runner.state[LOAD_BALANCERS] == ()
