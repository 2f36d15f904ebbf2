"""An ECS service behind an application load balancer, both halves real: `taskvpc up` as root, boto3.

One `taskvpc up` for the module. An ALB, an `ip` target group checked every 5 s and an HTTP listener; a
3-task awsvpc service with `loadBalancers` whose tasks' group admits only the ALB's. The scheduler
registers the tasks, the agent's health checker passes them, the ALB serves from all three; a rolling
deploy (100 % / 200 %, 2 s deregistration delay) under continuous traffic loses no request; a task that
stops serving turns unhealthy with ELB's reason and the scheduler replaces it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskvpc.agent.runtime.procs import cmdline
from tests.root.test_alb_root import TASK_DEFINITION, get, health, server, wait_for
from tests.root.upserver import RootServer

__all__ = ["server"]  # the module-scoped `taskvpc up` fixture, shared in shape with test_alb_root

pytestmark = [pytest.mark.root]


class Client(threading.Thread):
    """Sends requests through the ALB one after another until stopped; counts answers and failures."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                status, body = get(self.url, timeout=3)
            except OSError as error:
                self.failures.append(repr(error))
                continue
            if status != 200:
                self.failures.append(f"HTTP {status}")
            else:
                self.answers[body] = self.answers.get(body, 0) + 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def task_ips(ecs: Any, arns: list[str]) -> dict[str, str]:
    """Task ARN -> its ENI's private address."""
    found = {}
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        found[task["taskArn"]] = details.get("privateIPv4Address", "")  # "" until it is provisioned
    return found


def running(ecs: Any, service: str) -> list[str]:
    arns: list[str] = ecs.list_tasks(cluster="default", serviceName=service, desiredStatus="RUNNING")[
        "taskArns"
    ]
    return arns


def describe(ecs: Any, service: str) -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(cluster="default", services=[service])["services"][0]
    return found


@pytest.fixture(scope="module")
def alb(server: RootServer) -> Iterator[dict[str, str]]:
    """An ALB with its groups, an `ip` target group (5 s checks, 2 s delay) and a listener."""
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**TASK_DEFINITION)
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    home = next(s for s in subnets if s["AvailabilityZone"] == zone)  # where the agent places tasks
    other = next(s for s in subnets if s["AvailabilityZone"] != zone)
    vpc_id = home["VpcId"]
    alb_sg = ec2.create_security_group(GroupName="svc-alb", Description="alb", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=alb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    task_sg = ec2.create_security_group(GroupName="svc-tasks", Description="from the alb", VpcId=vpc_id)[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=task_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": alb_sg}]}
        ],
    )
    lb = elbv2.create_load_balancer(
        Name="svc", Subnets=[home["SubnetId"], other["SubnetId"]], SecurityGroups=[alb_sg]
    )["LoadBalancers"][0]
    tg = elbv2.create_target_group(
        Name="svc",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc_id,
        TargetType="ip",
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )["TargetGroups"][0]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}],
    )
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    path = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
    [address, *_] = sorted(
        e["PrivateIpAddress"]
        for e in ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
            "NetworkInterfaces"
        ]
        if e.get("Description") == f"ELB {path}"
    )
    yield {
        "tg": tg["TargetGroupArn"],
        "url": f"http://{address}/",
        "subnet": home["SubnetId"],
        "group": task_sg,
    }
    try:  # the service first (its tasks drain), then the LB: the server fixture checks nothing is left
        ecs.delete_service(cluster="default", service="web", force=True)
        wait_for(lambda: not running(ecs, "web"), 30, "service tasks stopped")
    finally:
        elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])


@pytest.fixture(autouse=True)
def explain_failure(request: pytest.FixtureRequest, server: RootServer) -> Iterator[None]:
    """On a failure, print what it needs to be understood: the service, its tasks, the agent's log."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed == failed_before:
        return
    ecs = server.client("ecs")
    found = ecs.describe_services(cluster="default", services=["web"])["services"]
    for service in found:
        print("deployments:", json.dumps(service["deployments"], default=str))
        print("events:", "\n".join(e["message"] for e in service["events"][:30]))
    for tg in server.client("elbv2").describe_target_groups()["TargetGroups"]:
        print("health:", health(server.client("elbv2"), tg["TargetGroupArn"]))
    arns = ecs.list_tasks(cluster="default", desiredStatus="STOPPED")["taskArns"][:20]
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"] if arns else []:
        print("stopped:", task["taskArn"], task.get("stopCode"), task.get("stoppedReason"))
    log = (server.state_dir / "server.log").read_text(errors="replace").splitlines()
    print("\n".join(line for line in log if "HTTP/1.1" not in line)[-8000:])


def serving_process(pid: int) -> int:
    """The httpd among ``pid`` and its descendants (the container's main process may be an init)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        if "httpd" in " ".join(cmdline(current) or []):
            return current
        todo += children.get(current, [])
    raise AssertionError(f"no httpd under pid {pid}")


def all_healthy(elbv2: Any, tg: str, ips: set[str]) -> bool:
    seen = health(elbv2, tg)
    return set(seen) == ips and all(h["State"] == "healthy" for h in seen.values())


def test_service_registers_healthy_targets_served_through_the_alb(
    server: RootServer, alb: dict[str, str]
) -> None:
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    ecs.create_service(
        cluster="default",
        serviceName="web",
        taskDefinition="alb-web:1",
        desiredCount=3,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200},
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [alb["subnet"]], "securityGroups": [alb["group"]]}
        },
        loadBalancers=[{"targetGroupArn": alb["tg"], "containerName": "web", "containerPort": 80}],
    )
    arns = wait_for(lambda: found if len(found := running(ecs, "web")) == 3 else None, 30, "3 tasks")
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    ips = set(task_ips(ecs, arns).values())
    wait_for(lambda: all_healthy(elbv2, alb["tg"], ips), 30, "3 healthy targets")

    answered: dict[str, int] = {}
    for _ in range(24):
        status, body = get(alb["url"])
        assert status == 200, (status, body)
        answered[body] = answered.get(body, 0) + 1
    assert set(answered) == ips, answered

    messages = [e["message"] for e in describe(ecs, "web")["events"]]
    assert f"(service web) registered 3 targets in (target-group {alb['tg']})" in messages, messages
    wait_for(
        lambda: describe(ecs, "web")["deployments"][0]["rolloutState"] == "COMPLETED", 20, "first rollout"
    )


def test_rolling_deploy_under_traffic_loses_no_request(server: RootServer, alb: dict[str, str]) -> None:
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    old = task_ips(ecs, running(ecs, "web"))
    assert len(old) == 3
    revision = ecs.register_task_definition(**TASK_DEFINITION)["taskDefinition"]["taskDefinitionArn"]
    client = Client(alb["url"])
    client.start()
    try:
        ecs.update_service(cluster="default", service="web", taskDefinition=revision)

        def completed() -> dict[str, Any] | None:
            found = describe(ecs, "web")
            [primary] = [d for d in found["deployments"] if d["status"] == "PRIMARY"]
            done = len(found["deployments"]) == 1 and primary["rolloutState"] == "COMPLETED"
            return found if done else None

        wait_for(completed, 60, "rolling deploy completed")
        time.sleep(1)  # a little traffic after the last drain
    finally:
        client.stop()

    new = task_ips(ecs, running(ecs, "web"))
    assert len(new) == 3 and not set(new) & set(old)
    assert all_healthy(elbv2, alb["tg"], set(new.values()))

    def old_stopped() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = ecs.describe_tasks(cluster="default", tasks=list(old))["tasks"]
        return found if {t["lastStatus"] for t in found} == {"STOPPED"} else None

    stopped = wait_for(old_stopped, 15, "old tasks stopped")
    assert {t["stopCode"] for t in stopped} == {"ServiceSchedulerInitiated"}
    assert client.failures == [], client.failures
    assert set(new.values()) <= set(client.answers), client.answers
    print(json.dumps({"requests": sum(client.answers.values()), "answers": client.answers}))


def test_task_that_stops_serving_is_replaced(server: RootServer, alb: dict[str, str]) -> None:
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    before = task_ips(ecs, running(ecs, "web"))
    victim, victim_ip = next(iter(before.items()))
    # Its httpd answers 404 once its page is gone.
    [pid_file] = server.state_dir.glob(f"agent/tasks/{victim.rsplit('/', 1)[1]}/web/pid")
    httpd = serving_process(int(json.loads(pid_file.read_text())["pid"]))
    (Path(f"/proc/{httpd}/cwd") / "index.html").unlink()  # busybox httpd chdirs into its `-h` directory

    def unhealthy() -> dict[str, str] | None:
        seen = health(elbv2, alb["tg"]).get(victim_ip)
        return seen if seen and seen["State"] == "unhealthy" else None

    seen = wait_for(unhealthy, 20, "victim unhealthy")
    assert seen["Reason"] == "Target.ResponseCodeMismatch"
    assert seen["Description"] == "Health checks failed with these codes: [404]"

    def replaced() -> dict[str, str] | None:
        now = task_ips(ecs, running(ecs, "web"))
        fresh = set(now) - set(before)
        return now if len(now) == 3 and victim not in now and fresh and all(now.values()) else None

    after = wait_for(replaced, 40, "victim replaced")
    wait_for(lambda: all_healthy(elbv2, alb["tg"], set(after.values())), 20, "replacement healthy")
    [gone] = ecs.describe_tasks(cluster="default", tasks=[victim])["tasks"]
    assert gone["stoppedReason"] == f"Task failed ELB health checks in (target-group {alb['tg']})"
    messages = [e["message"] for e in describe(ecs, "web")["events"]]
    assert any("is unhealthy in" in m and victim.rsplit("/", 1)[1] in m for m in messages), messages
