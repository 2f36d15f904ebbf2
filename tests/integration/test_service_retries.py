"""What the service scheduler cannot do yet costs nothing while it waits (in-process API, SQLite and
PostgreSQL, fake agents):

* a task that fits no instance: the placement is retried with a backoff (no pass of the ``ecs-services``
  loop changes anything in between), ECS's "unable to place" event is written once, and an instance that
  registers gets the task within a pass or two;
* a target group that refuses the tasks' addresses: the registration backs off the same way, its event once;
* a task drained from its target group shows DEACTIVATING (desired STOPPED) for the group's deregistration
  delay while the agent keeps it running, then STOPPING, DEPROVISIONING, STOPPED; boto3's waiter sees it.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest

from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import InProcessServer
from tests.integration.test_elbv2_services import (
    HealthChecker,
    _addresses,
    _balanced,
    _create,
    _messages,
    _service,
    _targets,
    _until,
    elbv2 as elbv2,  # the fixture
)

CHANGED = re.compile(r"reconcile loop ecs-services: \d+ keys, (\d+) changed")


def _changed_passes(caplog: pytest.LogCaptureFixture, since: float) -> int:
    return sum(
        1
        for record in caplog.records
        if record.created >= since and (m := CHANGED.search(record.getMessage())) and int(m.group(1))
    )


def test_a_task_that_fits_nowhere_is_retried_with_a_backoff_and_placed_once_an_instance_comes(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskvpc.reconcile")
    agents(cpu=128, memory=128).start(auto=True)  # too small for the 256/512 task
    register_web(ecs)
    ecs.create_service(
        serviceName="web",
        taskDefinition="web",
        desiredCount=1,
        networkConfiguration=awsvpc(*default_subnets(ec2).values()),
    )
    unable = (
        "(service web) was unable to place a task because no container instance met all of its requirements."
    )
    _until(lambda: any(m.startswith(unable) for m in _messages(ecs)))
    time.sleep(3.0)  # the first retries (0.5, 1, 2 s) are behind us
    window = time.time()
    time.sleep(4.0)  # the next attempts come 4 and 8 s after the previous ones
    # every 0.5 s pass changed the service before (8 in the window); now one attempt (two if the loop
    # ran late under load) falls in it
    assert _changed_passes(caplog, window) <= 2
    assert sum(m.startswith(unable) for m in _messages(ecs)) == 1  # ECS does not repeat it
    assert _service(ecs)["pendingCount"] == 0

    big = agents(max_task_enis=4).start(auto=True)  # a new instance: placement at once, not in 8 s
    registered = time.monotonic()
    _until(lambda: bool(ecs.list_tasks(serviceName="web")["taskArns"]), timeout=10)
    assert time.monotonic() - registered < 4.0  # the backoff's next attempt was 8 s away
    _until(lambda: _service(ecs)["runningCount"] == 1, timeout=10)
    (arn,) = ecs.list_tasks(serviceName="web")["taskArns"]
    assert ecs.describe_tasks(tasks=[arn])["tasks"][0]["containerInstanceArn"] == big.arn


def test_a_refused_registration_backs_off_and_is_reported_once(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, elbv2: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskvpc.reconcile")
    agents(max_task_enis=10).start(auto=True)
    register_web(ecs)
    other = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=other, CidrBlock=f"10.20.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    ]
    lb = elbv2.create_load_balancer(Name="far", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name="far", Protocol="HTTP", Port=80, VpcId=other, TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=lb, Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}]
    )
    _create(ecs, ec2, tg, count=1)
    prefix = f"(service web) failed to register targets in (target-group {tg}) with (error "
    _until(lambda: any(m.startswith(prefix) for m in _messages(ecs)))
    time.sleep(3.0)
    window = time.time()
    time.sleep(4.0)
    assert _changed_passes(caplog, window) <= 2  # as above: not every pass
    assert sum(m.startswith(prefix) for m in _messages(ecs)) == 1
    assert _targets(elbv2, tg) == {}
    assert _service(ecs)["runningCount"] == 1  # the task runs; it is just not in the group


def test_a_drained_task_is_deactivating_for_the_deregistration_delay(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, elbv2: Any
) -> None:
    agent = agents(max_task_enis=10).start(auto=True)
    register_web(ecs)
    tg = _balanced(ec2, elbv2)["tg"]
    delay = 3
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}]
    )
    with HealthChecker(api, elbv2, tg):
        _create(ecs, ec2, tg, count=2)
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        _until(lambda: sorted(_targets(elbv2, tg).values()) == ["healthy", "healthy"])
        running = ecs.list_tasks(serviceName="web")["taskArns"]

        ecs.update_service(service="web", desiredCount=1)
        _until(lambda: "draining" in _targets(elbv2, tg).values())
        began = time.monotonic()
        leaving = next(
            a for a, ip in _addresses(ecs, running).items() if _targets(elbv2, tg).get(ip) == "draining"
        )
        seen: set[tuple[str, str]] = set()
        while (task := ecs.describe_tasks(tasks=[leaving])["tasks"][0])["lastStatus"] == "DEACTIVATING":
            seen.add((task["lastStatus"], task["desiredStatus"]))
            entry = agent.task(leaving)
            assert (
                entry is not None and entry["desiredStatus"] == "RUNNING"
            )  # it still serves its connections
            assert "_deregistering" not in task  # our bookkeeping is not shown
            assert time.monotonic() - began < delay + 5
            time.sleep(0.2)
        assert seen == {("DEACTIVATING", "STOPPED")}
        assert time.monotonic() - began >= delay - 1.0  # held for the delay (to a pass of the loop)
        assert task["stopCode"] == "ServiceSchedulerInitiated"
        assert ecs.list_tasks(serviceName="web", desiredStatus="STOPPED")["taskArns"] == [leaving]
        ecs.get_waiter("tasks_stopped").wait(tasks=[leaving], WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        stopped = ecs.describe_tasks(tasks=[leaving])["tasks"][0]
        assert stopped["lastStatus"] == "STOPPED" and stopped["stoppedReason"].startswith("Scaling activity")
        assert stopped["stoppingAt"] <= stopped["stoppedAt"]
    assert agent.errors == []
