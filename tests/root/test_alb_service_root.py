"""An ECS service behind an application load balancer, both halves real: `taskvpc up` as root, boto3.

One `taskvpc up` for the module. An ALB, an `ip` target group checked every 5 s and an HTTP listener; a
3-task awsvpc service with `loadBalancers` whose tasks' group admits only the ALB's. The scheduler
registers the tasks, the agent's health checker passes them, the ALB serves from all three; a rolling
deploy (100 % / 200 %, 2 s deregistration delay) under continuous traffic loses no request; a task made to
answer 500 turns unhealthy with `Target.ResponseCodeMismatch` and the scheduler replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.root.lbfixtures import (
    Balanced,
    balanced_lb,
    explain_service,
    failing_task_replaced,
    network,
    remove_balanced,
    rolling_deploy,
    server,
    serves_from,
    start_service,
    task_definition,
)
from tests.root.upserver import RootServer

__all__ = ["server"]

pytestmark = [pytest.mark.root]

FAMILY = "svc-web"


@pytest.fixture(scope="module")
def alb(server: RootServer) -> Iterator[Balanced]:
    """An ALB over two AZs with its groups, an `ip` target group (5 s checks, 2 s delay) and a listener."""
    server.client("ecs").register_task_definition(**task_definition(FAMILY))
    net = network(server, "svc-alb")
    balanced = balanced_lb(server, "application", "HTTP", [net.home, net.other], net=net, name="svc")
    yield balanced
    remove_balanced(server, balanced, "web")


@pytest.fixture(autouse=True)
def explain_failure(request: pytest.FixtureRequest, server: RootServer) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed != failed_before:
        explain_service(server, "web")


def test_service_registers_healthy_targets_served_through_the_alb(server: RootServer, alb: Balanced) -> None:
    ips = start_service(server, "web", FAMILY, alb.tg, alb.net)
    serves_from(alb.url, set(ips.values()))


def test_rolling_deploy_under_traffic_loses_no_request(server: RootServer, alb: Balanced) -> None:
    client = rolling_deploy(server, "web", FAMILY, alb.tg, alb.url)
    assert client.failures == [], client.failures
    print(json.dumps({"requests": client.total, "answers": client.answers}))


def test_task_answering_500_is_replaced(server: RootServer, alb: Balanced) -> None:
    seconds = failing_task_replaced(
        server,
        "web",
        alb.tg,
        "bad",
        "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [500]",
    )
    print(json.dumps({"failure_to_healthy_replacement_s": round(seconds, 1)}))
