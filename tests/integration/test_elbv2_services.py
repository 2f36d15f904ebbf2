"""The ECS side's calls into ELBv2 (control plane, real store): loadBalancers checks with ECS's texts, a
running task registered and reported healthy, drained before it may stop, and the events ECS writes."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from taskvpc.control.elbv2 import service_targets, targets
from taskvpc.domain.errors import ClientError as DomainError
from tests.integration.server import InProcessServer
from tests.integration.test_elbv2 import _alb, _network, _tg

TASK_DEFINITION = {
    "networkMode": "awsvpc",
    "containerDefinitions": [{"name": "web", "portMappings": [{"containerPort": 8080}]}],
}


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _context(api: InProcessServer, at: float | None = None) -> Any:
    plane = getattr(api, "control_plane", None)
    if plane is None:
        pytest.skip("these are in-process control-plane calls")
    return plane.context("us-east-1", time.time() if at is None else at)


def _error(call: Any) -> str:
    with pytest.raises(DomainError) as excinfo:
        call()
    assert excinfo.value.code == "InvalidParameterException"
    return excinfo.value.message


def test_load_balancers_are_checked_like_ecs(api: InProcessServer, elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    lb = _alb(elbv2, net)
    ip_tg = _tg(elbv2, net)["TargetGroupArn"]
    instance_tg = elbv2.create_target_group(Name="inst", Protocol="HTTP", Port=80, VpcId=net["vpc"])[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    ctx = _context(api)

    def check(entries: list[dict[str, Any]], td: dict[str, Any] = TASK_DEFINITION) -> Any:
        with ctx.db.transaction() as conn:
            return service_targets.check_load_balancers(conn, ctx, entries, td)

    entry = {"targetGroupArn": ip_tg, "containerName": "web", "containerPort": 8080}
    assert (
        _error(lambda: check([entry]))
        == f"The target group with targetGroupArn {ip_tg} does not have an associated load balancer."
    )
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": ip_tg}],
    )
    assert check([entry]) == [entry]
    assert _error(lambda: check([{**entry, "targetGroupArn": instance_tg}])) == (
        f"The provided target group {instance_tg} has target type instance, which is incompatible with the awsvpc "
        "network mode specified in the task definition."
    )
    assert _error(lambda: check([entry], {**TASK_DEFINITION, "networkMode": "bridge"})) == (
        f"The provided target group {ip_tg} has target type ip, which is incompatible with the bridge network mode "
        "specified in the task definition."
    )
    assert "did not have a container port 9090" in _error(lambda: check([{**entry, "containerPort": 9090}]))


def test_task_registered_healthy_then_drained_before_stop(api: InProcessServer, elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    lb = _alb(elbv2, net)
    tg = _tg(elbv2, net)["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]
    )
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    service = {
        "serviceName": "web",
        "loadBalancers": [{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}],
    }
    ctx = _context(api)
    with ctx.db.transaction() as conn:
        assert service_targets.register_task(conn, ctx, service, "10.20.1.50") == [
            f"(service web) registered 1 targets in (target-group {tg})"
        ]
        assert service_targets.register_task(conn, ctx, service, "10.20.1.50") == []  # already registered
        assert not service_targets.task_healthy(conn, ctx, service, "10.20.1.50")
    assert targets.report_target_health(ctx, tg, ("10.20.1.50", 8080), "healthy", None)
    with ctx.db.transaction() as conn:
        assert service_targets.task_healthy(conn, ctx, service, "10.20.1.50")
        assert service_targets.deregister_task(conn, ctx, service, "10.20.1.50") == [
            f"(service web) deregistered 1 targets in (target-group {tg})"
        ]
        assert not service_targets.task_drained(conn, ctx, service, "10.20.1.50")
    state = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"][0]["TargetHealth"][
        "State"
    ]
    assert state == "draining"
    later = dataclasses.replace(ctx, now=ctx.now + 30)
    with later.db.read() as conn:
        assert service_targets.task_drained(conn, later, service, "10.20.1.50")
