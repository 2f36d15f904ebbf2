"""ECS services behind ELBv2 target groups (in-process API, SQLite and PostgreSQL, fake agents).

* CreateService/UpdateService ``loadBalancers`` refused with ECS's texts, changing nothing;
* the whole life of a load-balanced service: tasks registered when RUNNING (their ENI's IP at the
  container port), counted healthy only once their targets are, an unhealthy target's task replaced,
  scale-in and DeleteService deregistering (draining) before they stop tasks;
* a rolling deploy never has fewer healthy registered targets than ``minimumHealthyPercent`` allows.

Target health comes from :class:`HealthChecker`, a thread standing in for the data plane's checker: it
reports through ``control.elbv2.targets.report_target_health`` as the real one does.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.elbv2 import service_targets, targets
from taskvpc.domain.errors import ClientError as DomainError
from tests.integration.ecs_support import WEB_CONTAINER, awsvpc, default_subnets, error_of, register_web
from tests.integration.server import InProcessServer

WAIT = {"Delay": 1, "MaxAttempts": 60}
DRAIN_SECONDS = 1


def _context(api: InProcessServer) -> Any:
    plane = getattr(api, "control_plane", None)
    if plane is None:
        pytest.skip("these call the control plane in this process")
    return plane.context("us-east-1", time.time())


def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        time.sleep(0.1)


class HealthChecker:
    """Reports every ``initial`` target healthy after ``delay`` seconds, or unhealthy (code 500) when its
    address is in ``sick``; records the healthy registered targets it saw at each look."""

    def __init__(self, api: InProcessServer, elbv2: Any, group: str, delay: float = 0.0) -> None:
        self.api, self.elbv2, self.group, self.delay = api, elbv2, group, delay
        self.sick: set[str] = set()
        self.healthy_seen: list[int] = []
        self._first_seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthChecker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = self.elbv2.describe_target_health(TargetGroupArn=self.group)["TargetHealthDescriptions"]
            self.healthy_seen.append(sum(1 for d in found if d["TargetHealth"]["State"] == "healthy"))
            for description in found:
                key = (description["Target"]["Id"], description["Target"]["Port"])
                state = description["TargetHealth"]["State"]
                first = self._first_seen.setdefault(key, time.monotonic())
                ctx = _context(self.api)
                if key[0] in self.sick and state in ("initial", "healthy"):
                    targets.report_target_health(
                        ctx, self.group, key, "unhealthy", "Target.ResponseCodeMismatch", "500"
                    )
                elif state == "initial" and time.monotonic() - first >= self.delay:
                    targets.report_target_health(ctx, self.group, key, "healthy", None)
            time.sleep(0.05)


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _balanced(ec2: Any, elbv2: Any, listener: bool = True) -> dict[str, str]:
    """An ALB over two default subnets and an ip target group (port 80) it forwards to."""
    subnets = default_subnets(ec2)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    lb = elbv2.create_load_balancer(Name="web", Subnets=sorted(subnets.values())[:2])["LoadBalancers"][0]
    tg = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DRAIN_SECONDS)}],
    )
    if listener:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )
    return {"lb": lb["LoadBalancerArn"], "tg": tg, "vpc": vpc}


def _create(ecs: Any, ec2: Any, tg: str, count: int = 2, **extra: Any) -> dict[str, Any]:
    service: dict[str, Any] = ecs.create_service(
        serviceName="web",
        taskDefinition="web",
        desiredCount=count,
        networkConfiguration=awsvpc(*default_subnets(ec2).values()),
        loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}],
        **extra,
    )["service"]
    return service


def _service(ecs: Any) -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(services=["web"])["services"][0]
    return found


def _messages(ecs: Any) -> list[str]:
    return [e["message"] for e in _service(ecs)["events"]]


def _targets(elbv2: Any, tg: str) -> dict[str, str]:
    found = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}


def _addresses(ecs: Any, arns: list[str]) -> dict[str, str]:
    found = ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
    return {t["taskArn"]: service_targets.task_address(t) or "" for t in found}


def test_load_balancers_are_refused_as_ecs_refuses_them(
    api: InProcessServer, ecs: Any, ec2: Any, elbv2: Any
) -> None:
    ecs.create_cluster(clusterName="default")
    register_web(ecs)
    unused = _balanced(ec2, elbv2, listener=False)["tg"]
    instance_tg = elbv2.create_target_group(Name="inst", Protocol="HTTP", Port=80, VpcId=_vpc(ec2))[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    subnets = list(default_subnets(ec2).values())

    def refused(balancers: list[dict[str, Any]], **extra: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as excinfo:
            ecs.create_service(
                serviceName="web",
                taskDefinition="web",
                desiredCount=1,
                networkConfiguration=awsvpc(*subnets),
                loadBalancers=balancers,
                **extra,
            )
        return error_of(excinfo)

    entry = {"targetGroupArn": unused, "containerName": "web", "containerPort": 80}
    assert refused([entry]) == (
        "InvalidParameterException",
        f"The target group with targetGroupArn {unused} does not have an associated load balancer.",
    )
    assert refused([{**entry, "targetGroupArn": instance_tg}]) == (
        "InvalidParameterException",
        f"The provided target group {instance_tg} has target type instance, which is incompatible with the "
        "awsvpc network mode specified in the task definition.",
    )
    elbv2.create_listener(
        LoadBalancerArn=elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"],
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": unused}],
    )
    assert refused([{**entry, "containerName": "nope"}]) == (
        "InvalidParameterException",
        "The container nope does not exist in the task definition.",
    )
    assert refused([{**entry, "containerPort": 9090}]) == (
        "InvalidParameterException",
        "The container web did not have a container port 9090 defined.",
    )
    assert refused([{**entry, "loadBalancerName": "classic"}])[0] == "InvalidParameterException"
    assert refused([], healthCheckGracePeriodSeconds=30) == (
        "InvalidParameterException",
        "Health check grace period is only valid for services configured to use load balancers",
    )
    assert refused([entry], role="ecsServiceRole") == (
        "InvalidParameterException",
        "You cannot specify an IAM role for services that require a service linked role.",
    )
    assert ecs.list_services()["serviceArns"] == []  # nothing was made

    # UpdateService: the same checks; adding load balancers is a new deployment.
    plain = ecs.create_service(
        serviceName="web", taskDefinition="web", desiredCount=0, networkConfiguration=awsvpc(*subnets)
    )["service"]
    assert plain["loadBalancers"] == [] and "healthCheckGracePeriodSeconds" not in plain
    with pytest.raises(ClientError) as excinfo:
        ecs.update_service(service="web", healthCheckGracePeriodSeconds=10)
    assert error_of(excinfo)[1].startswith("Health check grace period is only valid")
    with pytest.raises(ClientError) as excinfo:
        ecs.update_service(service="web", loadBalancers=[{**entry, "containerPort": 81}])
    assert error_of(excinfo)[1] == "The container web did not have a container port 81 defined."
    assert len(_service(ecs)["deployments"]) == 1  # refused updates changed nothing
    updated = ecs.update_service(service="web", loadBalancers=[entry], healthCheckGracePeriodSeconds=15)[
        "service"
    ]
    assert updated["loadBalancers"] == [entry] and updated["healthCheckGracePeriodSeconds"] == 15
    assert [d["status"] for d in updated["deployments"]] == ["PRIMARY", "ACTIVE"]
    assert all(not any(k.startswith("_") for k in d) for d in updated["deployments"])
    # A new revision must still have the container port the load balancers name.
    moved = dict(WEB_CONTAINER, portMappings=[{"containerPort": 8080, "protocol": "tcp"}])
    revision = register_web(ecs, containers=[moved])["taskDefinitionArn"]
    with pytest.raises(ClientError) as excinfo:
        ecs.update_service(service="web", taskDefinition=revision)
    assert error_of(excinfo)[1] == "The container web did not have a container port 80 defined."
    assert ecs.update_service(service="web", desiredCount=0)["service"]["loadBalancers"] == [entry]


def _vpc(ec2: Any) -> str:
    found: str = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    return found


def test_bridge_mode_is_checked_against_the_target_type(api: InProcessServer, elbv2: Any, ec2: Any) -> None:
    tg = elbv2.create_target_group(Name="ip", Protocol="HTTP", Port=80, VpcId=_vpc(ec2), TargetType="ip")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    ctx = _context(api)
    bridge = {"networkMode": "bridge", "containerDefinitions": [{"name": "web", "portMappings": []}]}
    entry = {"targetGroupArn": tg, "containerName": "web", "containerPort": 80}
    with ctx.db.transaction() as conn, pytest.raises(DomainError) as excinfo:
        service_targets.check_load_balancers(conn, ctx, [entry], bridge)
    assert excinfo.value.message == (
        f"The provided target group {tg} has target type ip, which is incompatible with the bridge network "
        "mode specified in the task definition."
    )


def test_a_load_balanced_service_from_create_to_delete(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, elbv2: Any
) -> None:
    agent = agents(max_task_enis=10).start(auto=True)
    register_web(ecs)
    net = _balanced(ec2, elbv2)
    tg = net["tg"]
    created = _create(ecs, ec2, tg, count=2)
    assert created["loadBalancers"] == [{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}]
    assert created["healthCheckGracePeriodSeconds"] == 0

    # Without a health checker the targets stay initial: RUNNING, registered, but never healthy, so the
    # deployment does not complete.
    _until(lambda: len(_targets(elbv2, tg)) == 2)
    arns = ecs.list_tasks(serviceName="web")["taskArns"]
    addresses = _addresses(ecs, arns)
    assert set(_targets(elbv2, tg)) == set(addresses.values())
    assert set(_targets(elbv2, tg).values()) == {"initial"}
    assert _service(ecs)["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    registered = [m for m in _messages(ecs) if m.startswith("(service web) registered ")]
    assert all(
        re.fullmatch(rf"\(service web\) registered [12] targets in \(target-group {tg}\)", m)
        for m in registered
    )

    with HealthChecker(api, elbv2, tg) as checker:
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
        _until(lambda: _service(ecs)["deployments"][0]["rolloutState"] == "COMPLETED")
        assert set(_targets(elbv2, tg).values()) == {"healthy"}
        assert _messages(ecs)[0] == "(service web) has reached a steady state."

        # A target that fails its checks: its task is deregistered, drained, stopped and replaced.
        sick_arn = arns[0]
        checker.sick.add(addresses[sick_arn])
        sick_id = sick_arn.rsplit("/", 1)[1]
        unhealthy = (
            f"(service web) (task {sick_id}) (port 80) is unhealthy in (target-group {tg}) due to "
            "(reason Health checks failed with these codes: [500])."
        )
        _until(lambda: unhealthy in _messages(ecs))
        task = ecs.describe_tasks(tasks=[sick_arn])["tasks"][0]
        # draining first (ECS's DEACTIVATING): it still serves its connections
        assert (task["lastStatus"], task["desiredStatus"]) == ("DEACTIVATING", "STOPPED")
        assert _targets(elbv2, tg)[addresses[sick_arn]] == "draining"
        _until(lambda: ecs.describe_tasks(tasks=[sick_arn])["tasks"][0]["lastStatus"] == "STOPPED")
        stopped = ecs.describe_tasks(tasks=[sick_arn])["tasks"][0]
        assert stopped["stoppedReason"] == f"Task failed ELB health checks in (target-group {tg})"
        assert stopped["stopCode"] == "ServiceSchedulerInitiated"
        assert stopped["stoppingAt"] >= task["startedAt"]
        messages = _messages(ecs)
        assert f"(service web) deregistered 1 targets in (target-group {tg})" in messages
        assert any(
            re.fullmatch(
                r"\(service web, taskSet ecs-svc/\d{19}\) has begun draining connections on 1 tasks\.", m
            )
            for m in messages
        )
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
        _until(lambda: sorted(_targets(elbv2, tg).values()) == ["healthy", "healthy"])
        assert addresses[sick_arn] not in _targets(elbv2, tg)

        # Scale in: the task goes out of the group first, and stops only once drained.
        now_running = ecs.list_tasks(serviceName="web")["taskArns"]
        ecs.update_service(service="web", desiredCount=1)
        _until(lambda: "draining" in _targets(elbv2, tg).values())
        leaving = next(
            a for a, ip in _addresses(ecs, now_running).items() if _targets(elbv2, tg).get(ip) == "draining"
        )
        leaving_task = ecs.describe_tasks(tasks=[leaving])["tasks"][0]
        assert (leaving_task["lastStatus"], leaving_task["desiredStatus"]) == ("DEACTIVATING", "STOPPED")
        _until(lambda: ecs.describe_tasks(tasks=[leaving])["tasks"][0]["lastStatus"] == "STOPPED")
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
        assert list(_targets(elbv2, tg).values()) == ["healthy"]

        # A task stopped by hand leaves its target group at once, and is replaced.
        last = ecs.list_tasks(serviceName="web")["taskArns"][0]
        last_ip = _addresses(ecs, [last])[last]
        ecs.stop_task(task=last)
        _until(lambda: _targets(elbv2, tg).get(last_ip) != "healthy")
        _until(
            lambda: last_ip not in _targets(elbv2, tg) and list(_targets(elbv2, tg).values()) == ["healthy"]
        )
        assert f"(service web) deregistered 1 targets in (target-group {tg})" in _messages(ecs)

        # DeleteService deregisters every task before it stops it.
        ecs.delete_service(service="web", force=True)
        ecs.get_waiter("services_inactive").wait(services=["web"], WaiterConfig=WAIT)
        assert _targets(elbv2, tg) == {}
        assert checker.healthy_seen  # the checker did look
    assert agent.errors == []


def test_a_target_group_in_another_vpc_refuses_the_tasks(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, elbv2: Any
) -> None:
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
    assert _targets(elbv2, tg) == {}
    service = _service(ecs)
    assert service["runningCount"] == 1 and service["deployments"][0]["rolloutState"] == "IN_PROGRESS"


def test_a_rolling_deploy_keeps_the_minimum_of_healthy_targets(
    api: InProcessServer, agents: Any, ecs: Any, ec2: Any, elbv2: Any
) -> None:
    agents(max_task_enis=10).start(auto=True)
    register_web(ecs)
    tg = _balanced(ec2, elbv2)["tg"]
    desired, low, high = 3, 100, 134  # one new task at a time; an old one leaves only for a healthy new one
    with HealthChecker(api, elbv2, tg, delay=0.3) as checker:
        _create(
            ecs,
            ec2,
            tg,
            count=desired,
            deploymentConfiguration={"minimumHealthyPercent": low, "maximumPercent": high},
        )
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
        _until(lambda: sorted(_targets(elbv2, tg).values()) == ["healthy"] * desired)
        before = set(_targets(elbv2, tg))
        checker.healthy_seen.clear()
        second = register_web(ecs)
        ecs.update_service(service="web", taskDefinition=second["taskDefinitionArn"])
        _until(lambda: _service(ecs)["deployments"][0]["rolloutState"] == "COMPLETED", timeout=60)
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
        _until(lambda: len(_targets(elbv2, tg)) == desired)  # the last old target has drained
        seen = list(checker.healthy_seen)
    assert seen and min(seen) >= math.ceil(desired * low / 100), seen
    assert not before & set(_targets(elbv2, tg))  # every target is a new task's
    tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="web")["taskArns"])["tasks"]
    assert {t["taskDefinitionArn"] for t in tasks} == {second["taskDefinitionArn"]}
