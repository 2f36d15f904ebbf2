"""What the load-balancer root tests share: one `taskvpc up` per module, the VPC's subnets, an LB group with
a task group that admits only it, a busybox task that serves (or fails) on demand, and the waits.

A module imports ``server`` (the module-scoped fixture) and the helpers it needs. The task's behaviour is
chosen at start (``MODE`` in its environment) or changed while it runs (:func:`make_task`): ``good`` serves
its own address with busybox httpd on port 80, ``bad`` answers HTTP 500 to everything, ``closed`` listens on
nothing (the port refuses). A running task switches when a file of that name appears in its shell's
directory and its httpd is gone (the shell loops over the three).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskvpc.agent.runtime.procs import cmdline
from tests.root import hostcheck
from tests.root.upserver import RootServer, kill_task_shims

T = TypeVar("T")

SCRIPT = (
    # The shell may be the container's PID 1, which ignores an untrapped SIGTERM: trap it, and run each
    # server in the background so that `wait` (which a trapped signal interrupts) is what the loop blocks in.
    "trap 'kill $child 2>/dev/null; exit 0' TERM INT; "
    "mkdir -p www && ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 > www/index.html && "
    'while true; do if [ "$MODE" = closed ] || [ -f closed ]; then sleep 1 & '
    'elif [ "$MODE" = bad ] || [ -f bad ]; then printf "HTTP/1.0 500 Internal Server Error\\r\\n'
    'Content-Length: 3\\r\\n\\r\\nbad" | nc -l -p 80 & '
    "else busybox httpd -f -p 80 -h www & fi; child=$!; wait $child; done"
)


def task_definition(family: str) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "cpu": "128",
        "memory": "128",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "public.ecr.aws/docker/library/busybox:stable",
                "entryPoint": ["sh", "-c"],
                "command": [SCRIPT],
                "essential": True,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
            }
        ],
    }


def haproxy_pids(state_dir: Path) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and (args := cmdline(int(p)))
        and args[0].endswith("haproxy")
        and str(state_dir) in " ".join(args)
    ]


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootServer]:
    """One `taskvpc up` for the module; afterwards nothing of it may be left on the host."""
    prefix = "tvl" + secrets.token_hex(2)
    name = str(request.module.__name__).rsplit(".", 1)[-1].removeprefix("test_")
    up = RootServer(tmp_path_factory.mktemp(name) / "state", prefix)
    try:
        yield up.start()
    finally:
        up.stop()
        kill_task_shims(up.state_dir)
        for pid in haproxy_pids(up.state_dir):  # an LB a failed test left (by pid: ours only)
            os.kill(pid, signal.SIGKILL)
        hostcheck.unmount_under(up.state_dir)
        hostcheck.scrub(prefix)
        left = hostcheck.wait_clean(prefix)
        assert not left, f"left behind: {left}"


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, ""


def get_ok(url: str) -> bool:
    try:
        return get(url, timeout=0.5)[0] == 200
    except OSError:
        return False


def host_connects(ip: str, port: int = 80, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def health(elbv2: Any, tg_arn: str) -> dict[str, dict[str, str]]:
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"] for d in found}


@dataclass(frozen=True)
class Network:
    """The default VPC as the agent sees it: ``home`` is the default subnet of the agent's AZ (where tasks
    are placed), ``other`` one of another AZ; ``lb_group`` admits TCP 80 from anywhere, ``behind_group``
    admits TCP 80 from ``lb_group`` only."""

    vpc_id: str
    home: str
    other: str
    lb_group: str
    behind_group: str


@dataclass(frozen=True)
class Balanced:
    """A load balancer set up for a service test: its target group, the URL through it, the network."""

    lb: str
    tg: str
    url: str
    net: Network


def network(server: RootServer, name: str) -> Network:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    home = next(s for s in subnets if s["AvailabilityZone"] == zone)
    vpc_id = home["VpcId"]
    other = next(s for s in subnets if s["AvailabilityZone"] != zone and s["VpcId"] == vpc_id)
    lb_group = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc_id)["GroupId"]
    allow(ec2, lb_group, {"IpRanges": [{"CidrIp": "0.0.0.0/0"}]})
    behind = ec2.create_security_group(GroupName=f"behind-{name}", Description=f"from {name}", VpcId=vpc_id)
    allow(ec2, behind["GroupId"], {"UserIdGroupPairs": [{"GroupId": lb_group}]})
    return Network(vpc_id, home["SubnetId"], other["SubnetId"], lb_group, behind["GroupId"])


def balanced_lb(
    server: RootServer,
    kind: str,
    protocol: str,
    subnets: list[str],
    *,
    net: Network,
    name: str,
    drain_seconds: int = 2,
) -> Balanced:
    """A load balancer of ``kind`` (``application`` or ``network``) in ``subnets`` with ``net``'s LB group,
    an ``ip`` target group of ``protocol`` on port 80 (checks every 5 s, timeout 2 s, thresholds 2 and 2,
    ``drain_seconds`` of deregistration delay) and a listener of ``protocol`` on 80 forwarding to it; the
    URL through its first address."""
    ec2, elbv2 = server.client("ec2"), server.client("elbv2")
    lb = elbv2.create_load_balancer(Name=name, Type=kind, Subnets=subnets, SecurityGroups=[net.lb_group])[
        "LoadBalancers"
    ][0]
    tg = elbv2.create_target_group(
        Name=name,
        Protocol=protocol,
        Port=80,
        VpcId=net.vpc_id,
        TargetType="ip",
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(drain_seconds)}],
    )
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol=protocol,
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    addresses = lb_addresses(ec2, net.vpc_id, lb["LoadBalancerArn"])
    assert len(addresses) == len(subnets), addresses  # one ENI per subnet
    return Balanced(lb["LoadBalancerArn"], tg, f"http://{addresses[0]}/", net)


def remove_balanced(server: RootServer, balanced: Balanced, service: str) -> None:
    """The service first (its tasks drain), then the load balancer: the server fixture checks nothing is
    left."""
    ecs = server.client("ecs")
    try:
        ecs.delete_service(cluster="default", service=service, force=True)
        wait_for(lambda: not running(ecs, service), 30, "service tasks stopped")
    finally:
        server.client("elbv2").delete_load_balancer(LoadBalancerArn=balanced.lb)


def allow(ec2: Any, group: str, source: dict[str, Any], port: int = 80) -> None:
    """Admit TCP ``port`` into ``group`` from ``source`` (``IpRanges`` or ``UserIdGroupPairs``)."""
    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}]
    )


def task_ips(ecs: Any, arns: list[str]) -> dict[str, str]:
    """Task ARN -> its ENI's private address ("" until it is provisioned)."""
    found = {}
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        found[task["taskArn"]] = details.get("privateIPv4Address", "")
    return found


def run_tasks(
    server: RootServer, family: str, subnet: str, groups: list[str], count: int, mode: str = "good"
) -> list[str]:
    """Run ``count`` tasks of ``family`` in ``mode``, wait until RUNNING; their addresses."""
    ecs = server.client("ecs")
    run = ecs.run_task(
        cluster="default",
        taskDefinition=family,
        count=count,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": groups}},
        overrides={"containerOverrides": [{"name": "web", "environment": [{"name": "MODE", "value": mode}]}]},
    )
    assert run["failures"] == []
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    return list(task_ips(ecs, arns).values())


def _serving_process(pid: int) -> int:
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
        args = cmdline(current) or []
        if any(Path(a).name == "httpd" for a in args[:2]):  # not the shell, whose script names httpd too
            return current
        todo += children.get(current, [])
    raise AssertionError(f"no httpd under pid {pid}")


def task_pid(server: RootServer, task_arn: str) -> int:
    """The main process of the task's `web` container (from the agent's pid file)."""
    [pid_file] = server.state_dir.glob(f"agent/tasks/{task_arn.rsplit('/', 1)[1]}/web/pid")
    return int(json.loads(pid_file.read_text())["pid"])


def make_task(server: RootServer, task_arn: str, mode: str) -> None:
    """Turn a serving task ``bad`` (HTTP 500) or ``closed`` (port refuses): the file tells its shell loop
    what to run next, and its httpd is killed (by pid: a process of this test's task)."""
    httpd = _serving_process(task_pid(server, task_arn))
    shell = int(Path(f"/proc/{httpd}/stat").read_text().rsplit(")", 1)[1].split()[1])
    (Path(f"/proc/{shell}/cwd") / mode).write_text("")
    os.kill(httpd, signal.SIGKILL)


def lb_addresses(ec2: Any, vpc_id: str, lb_arn: str) -> list[str]:
    """The private addresses of the LB's ENIs (what DescribeNetworkInterfaces shows as ELB's), sorted."""
    path = lb_arn.split(":loadbalancer/")[1]
    found = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return sorted(
        e["PrivateIpAddress"] for e in found["NetworkInterfaces"] if e.get("Description") == f"ELB {path}"
    )


def diagnose(server: RootServer, lb_arn: str, commands: tuple[str, ...] = ()) -> None:
    """What a failure needs to be understood (printed: pytest shows it with the failure)."""
    ns = f"{server.prefix}-l-{lb_arn.rsplit('/', 1)[1]}"
    for command in (
        f"ip -n {ns} addr",
        f"ip -n {ns} route",
        f"ip netns exec {ns} nft list ruleset",
        *commands,
    ):
        done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        print("$", command, "\n", done.stdout[-6000:], done.stderr[-1000:])
    log = (server.state_dir / "server.log").read_text(errors="replace").splitlines()
    print("\n".join(line for line in log if "taskvpc.agent" in line and "HTTP/1.1" not in line)[-8000:])


class Client:
    """Requests ``url`` one after another on a thread until stopped (a new connection each); counts
    answers by body and failures (errors, resets, non-200)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.is_set():
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

    @property
    def total(self) -> int:
        return sum(self.answers.values())


# Services behind a load balancer (the ALB and NLB service tests walk the same steps).


def running(ecs: Any, service: str) -> list[str]:
    arns: list[str] = ecs.list_tasks(cluster="default", serviceName=service, desiredStatus="RUNNING")[
        "taskArns"
    ]
    return arns


def describe(ecs: Any, service: str) -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(cluster="default", services=[service])["services"][0]
    return found


def all_healthy(elbv2: Any, tg: str, ips: set[str]) -> bool:
    seen = health(elbv2, tg)
    return set(seen) == ips and all(h["State"] == "healthy" for h in seen.values())


def explain_service(server: RootServer, service: str) -> None:
    """The service, its targets, its stopped tasks and the server's log (printed for a failure)."""
    ecs = server.client("ecs")
    for found in ecs.describe_services(cluster="default", services=[service])["services"]:
        print("deployments:", json.dumps(found["deployments"], default=str))
        print("events:", "\n".join(e["message"] for e in found["events"][:30]))
    for tg in server.client("elbv2").describe_target_groups()["TargetGroups"]:
        print("health:", health(server.client("elbv2"), tg["TargetGroupArn"]))
    arns = ecs.list_tasks(cluster="default", desiredStatus="STOPPED")["taskArns"][:20]
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"] if arns else []:
        print("stopped:", task["taskArn"], task.get("stopCode"), task.get("stoppedReason"))
    log = (server.state_dir / "server.log").read_text(errors="replace").splitlines()
    print("\n".join(line for line in log if "HTTP/1.1" not in line)[-8000:])


def start_service(server: RootServer, service: str, family: str, tg: str, net: Network) -> dict[str, str]:
    """A 3-task awsvpc service of ``family`` in ``tg`` (its tasks in ``net.behind_group``), once every
    target is healthy and the first rollout COMPLETED: task ARN -> address."""
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    ecs.create_service(
        cluster="default",
        serviceName=service,
        taskDefinition=family,
        desiredCount=3,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200},
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [net.home], "securityGroups": [net.behind_group]}
        },
        loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}],
    )
    arns = wait_for(lambda: found if len(found := running(ecs, service)) == 3 else None, 30, "3 tasks")
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    ips = task_ips(ecs, arns)
    wait_for(lambda: all_healthy(elbv2, tg, set(ips.values())), 30, "3 healthy targets")
    messages = [e["message"] for e in describe(ecs, service)["events"]]
    assert f"(service {service}) registered 3 targets in (target-group {tg})" in messages, messages
    wait_for(
        lambda: describe(ecs, service)["deployments"][0]["rolloutState"] == "COMPLETED", 20, "first rollout"
    )
    return ips


def serves_from(url: str, ips: set[str], requests: int = 24) -> dict[str, int]:
    """``requests`` requests to ``url``, each answered 200 by a task; every one of ``ips`` answered."""
    answered: dict[str, int] = {}
    for _ in range(requests):
        status, body = get(url)
        assert status == 200, (status, body)
        answered[body] = answered.get(body, 0) + 1
    assert set(answered) == ips, answered
    return answered


def rolling_deploy(server: RootServer, service: str, family: str, tg: str, url: str) -> Client:
    """A new revision of ``family`` rolled out to ``service`` while a client requests ``url``: every old task
    is replaced, drained and stopped by the scheduler, the new targets are healthy; the client's record."""
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    old = task_ips(ecs, running(ecs, service))
    assert len(old) == 3
    revision = ecs.register_task_definition(**task_definition(family))["taskDefinition"]["taskDefinitionArn"]
    with Client(url) as client:
        ecs.update_service(cluster="default", service=service, taskDefinition=revision)

        def completed() -> dict[str, Any] | None:
            found = describe(ecs, service)
            [primary] = [d for d in found["deployments"] if d["status"] == "PRIMARY"]
            done = len(found["deployments"]) == 1 and primary["rolloutState"] == "COMPLETED"
            return found if done else None

        wait_for(completed, 60, "rolling deploy completed")
        time.sleep(1)  # a little traffic after the last drain
    new = task_ips(ecs, running(ecs, service))
    assert len(new) == 3 and not set(new) & set(old)
    assert all_healthy(elbv2, tg, set(new.values()))

    def old_stopped() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = ecs.describe_tasks(cluster="default", tasks=list(old))["tasks"]
        return found if {t["lastStatus"] for t in found} == {"STOPPED"} else None

    stopped = wait_for(old_stopped, 15, "old tasks stopped")
    assert {t["stopCode"] for t in stopped} == {"ServiceSchedulerInitiated"}
    assert set(new.values()) <= set(client.answers), client.answers
    return client


def failing_task_replaced(
    server: RootServer, service: str, tg: str, mode: str, reason: str, description: str
) -> float:
    """One task of ``service`` made to fail (``make_task`` ``mode``) turns unhealthy with ELB's ``reason``
    and ``description``; the scheduler replaces it (a new task RUNNING and healthy, the old one STOPPED
    with ECS's reason, the event naming it). Seconds from the failure to a healthy replacement."""
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    before = task_ips(ecs, running(ecs, service))
    victim, victim_ip = next(iter(before.items()))
    broken = time.monotonic()
    make_task(server, victim, mode)

    def unhealthy() -> dict[str, str] | None:
        seen = health(elbv2, tg).get(victim_ip)
        return seen if seen and seen["State"] == "unhealthy" else None

    seen = wait_for(unhealthy, 20, "victim unhealthy")
    assert (seen["Reason"], seen["Description"]) == (reason, description), seen

    def replaced() -> dict[str, str] | None:
        now = task_ips(ecs, running(ecs, service))
        fresh = set(now) - set(before)
        return now if len(now) == 3 and victim not in now and fresh and all(now.values()) else None

    after = wait_for(replaced, 40, "victim replaced")
    wait_for(lambda: all_healthy(elbv2, tg, set(after.values())), 20, "replacement healthy")
    seconds = time.monotonic() - broken

    def stopped() -> dict[str, Any] | None:
        [task] = ecs.describe_tasks(cluster="default", tasks=[victim])["tasks"]
        return task if task["lastStatus"] == "STOPPED" else None

    gone = wait_for(stopped, 15, "victim stopped")
    assert gone["stoppedReason"] == f"Task failed ELB health checks in (target-group {tg})"
    messages = [e["message"] for e in describe(ecs, service)["events"]]
    assert any("is unhealthy in" in m and victim.rsplit("/", 1)[1] in m for m in messages), messages
    return seconds
