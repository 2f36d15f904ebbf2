"""An ECS service behind a network load balancer, both halves real: `taskvpc up` as root, boto3.

One `taskvpc up` for the module. An NLB with a group admitting the host, a TCP listener and an `ip` target
group (TCP checks every 5 s, 2 s deregistration delay); a 3-task awsvpc service with `loadBalancers` whose
tasks' group admits only the NLB's. Connections from the host to the NLB's address reach all three tasks;
a rolling deploy (100 % / 200 %) under continuous connections through the NLB has no reset or failure; a
task whose port stops answering turns unhealthy with `Target.FailedHealthChecks` and is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.root.lbfixtures import (
    Balanced,
    balanced_lb,
    diagnose,
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

FAMILY = "nsvc-web"


@pytest.fixture(scope="module")
def nlb(server: RootServer) -> Iterator[Balanced]:
    """An NLB in the agent's AZ with its groups, a TCP `ip` target group (5 s checks, 2 s delay) and a
    TCP listener."""
    server.client("ecs").register_task_definition(**task_definition(FAMILY))
    net = network(server, "svc-nlb")
    balanced = balanced_lb(server, "network", "TCP", [net.home], net=net, name="nsvc")
    yield balanced
    remove_balanced(server, balanced, "nweb")


@pytest.fixture(autouse=True)
def explain_failure(request: pytest.FixtureRequest, server: RootServer, nlb: Balanced) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed != failed_before:
        explain_service(server, "nweb")
        diagnose(server, nlb.lb)


def test_service_behind_the_nlb_serves_from_all_tasks(server: RootServer, nlb: Balanced) -> None:
    ips = start_service(server, "nweb", FAMILY, nlb.tg, nlb.net)
    serves_from(nlb.url, set(ips.values()))


def test_rolling_deploy_through_the_nlb_resets_nothing(server: RootServer, nlb: Balanced) -> None:
    client = rolling_deploy(server, "nweb", FAMILY, nlb.tg, nlb.url)
    assert client.failures == [], client.failures
    assert client.total >= 50, client.total  # new connections all through the deploy
    print(json.dumps({"connections": client.total, "answers": client.answers}))


def test_task_failing_its_tcp_check_is_replaced(server: RootServer, nlb: Balanced) -> None:
    seconds = failing_task_replaced(
        server, "nweb", nlb.tg, "closed", "Target.FailedHealthChecks", "Health checks failed"
    )
    print(json.dumps({"failure_to_healthy_replacement_s": round(seconds, 1)}))
