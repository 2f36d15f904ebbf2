"""An application load balancer for real: `taskvpc up` as root, awsvpc tasks behind it, boto3 driving it.

One `taskvpc up` for the module. The ALB spans two AZs' default subnets (the local agent runs it whatever
its own AZ); its targets are tasks whose group admits only the ALB's group, so the host reaches them
through the ALB and not directly; a task answering 500 and one whose group does not admit the ALB turn
unhealthy with ELB's reasons and get no traffic; deleting the ALB leaves nothing on the host.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskvpc.agent.runtime.procs import cmdline
from tests.root import hostcheck
from tests.root.upserver import RootServer, kill_task_shims

pytestmark = [pytest.mark.root]

T = TypeVar("T")

# Good tasks serve their own address; MODE=bad answers 500 to everything (busybox nc, one at a time).
SCRIPT = (
    'if [ "$MODE" = bad ]; then while true; do printf "HTTP/1.0 500 Internal Server Error\\r\\n'
    'Content-Length: 3\\r\\n\\r\\nbad" | nc -l -p 80; done; fi; mkdir -p www && '
    "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 > www/index.html && "
    "exec busybox httpd -f -p 80 -h www"
)
TASK_DEFINITION = {
    "family": "alb-web",
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


def _haproxy_pids(state_dir: Path) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and (args := cmdline(int(p)))
        and args[0].endswith("haproxy")
        and str(state_dir) in " ".join(args)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootServer]:
    prefix = "tvl" + secrets.token_hex(2)
    up = RootServer(tmp_path_factory.mktemp("alb") / "state", prefix)
    try:
        yield up.start()
    finally:
        up.stop()
        kill_task_shims(up.state_dir)
        for pid in _haproxy_pids(up.state_dir):  # an LB a failed test left (by pid: ours only)
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


def host_connects(ip: str, port: int = 80, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_tasks(
    server: RootServer, subnet: str, groups: list[str], count: int, mode: str = "good"
) -> list[str]:
    ecs = server.client("ecs")
    run = ecs.run_task(
        cluster="default",
        taskDefinition="alb-web",
        count=count,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": groups}},
        overrides={"containerOverrides": [{"name": "web", "environment": [{"name": "MODE", "value": mode}]}]},
    )
    assert run["failures"] == []
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    ips = []
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        ips.append(details["privateIPv4Address"])
    return ips


def health(elbv2: Any, tg_arn: str) -> dict[str, dict[str, str]]:
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"] for d in found}


def test_alb_routes_to_healthy_tasks_only_and_leaves_nothing(server: RootServer) -> None:
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**TASK_DEFINITION)
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    home = next(s for s in subnets if s["AvailabilityZone"] == zone)
    other = next(s for s in subnets if s["AvailabilityZone"] != zone)
    vpc_id = home["VpcId"]

    alb_sg = ec2.create_security_group(GroupName="alb", Description="alb", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=alb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    behind_sg = ec2.create_security_group(GroupName="behind-alb", Description="from the alb", VpcId=vpc_id)[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=behind_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": alb_sg}]}
        ],
    )
    default_sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]

    good = run_tasks(server, home["SubnetId"], [behind_sg], 3)
    [bad] = run_tasks(server, home["SubnetId"], [behind_sg], 1, mode="bad")
    [walled] = run_tasks(server, home["SubnetId"], [default_sg], 1)  # its group does not admit the ALB's

    lb = elbv2.create_load_balancer(
        Name="web", Subnets=[home["SubnetId"], other["SubnetId"]], SecurityGroups=[alb_sg]
    )["LoadBalancers"][0]
    tg = elbv2.create_target_group(
        Name="web",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc_id,
        TargetType="ip",
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )["TargetGroups"][0]
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    registered = time.monotonic()
    elbv2.register_targets(
        TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": ip} for ip in [*good, bad, walled]]
    )

    path = lb["LoadBalancerArn"].split(":loadbalancer/")[1]
    enis = [
        e
        for e in ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
            "NetworkInterfaces"
        ]
        if e.get("Description") == f"ELB {path}"
    ]
    addresses = sorted(e["PrivateIpAddress"] for e in enis)
    assert len(addresses) == 2

    # Healthy after one passing check; the 500 one and the walled one unhealthy with ELB's reasons.
    def settled() -> dict[str, dict[str, str]] | None:
        seen = health(elbv2, tg["TargetGroupArn"])
        done = all(seen[ip]["State"] == "healthy" for ip in good) and all(
            seen[ip]["State"] == "unhealthy" for ip in (bad, walled)
        )
        return seen if done else None

    try:
        seen = wait_for(settled, 40, "targets settled")
    except AssertionError:
        _diagnose(server, lb["LoadBalancerArn"], vpc_id, good[0], health(elbv2, tg["TargetGroupArn"]))
        raise
    settle_seconds = time.monotonic() - registered
    assert seen[bad]["Reason"] == "Target.ResponseCodeMismatch"
    assert seen[bad]["Description"] == "Health checks failed with these codes: [500]"
    assert seen[walled]["Reason"] == "Target.Timeout"
    assert seen[walled]["Description"] == "Request timed out"
    assert settle_seconds < 30

    # Through either ALB address, every good task serves, the bad and the walled ones never do; a target
    # that shows healthy already takes requests.
    answered: dict[str, int] = {}
    for address in addresses:
        for _ in range(12):
            status, body = get(f"http://{address}/")
            assert status == 200, (address, status, body)
            answered[body] = answered.get(body, 0) + 1
    assert set(answered) == set(good), answered

    # The seed's story: the tasks admit only the ALB's group, so the host cannot reach them directly.
    assert not any(host_connects(ip) for ip in good)

    # Deleting the ALB leaves no namespace, port, process or rule naming its ENIs.
    lb_id = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    netns_name = f"{server.prefix}-l-{lb_id}"
    assert netns_name in hostcheck.namespaces(server.prefix)
    assert _haproxy_pids(server.state_dir)
    elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"
    ports = [
        server.prefix + e["NetworkInterfaceId"].removeprefix("eni-")[-(15 - len(server.prefix)) :]
        for e in enis
    ]

    def gone() -> bool:
        links = subprocess.run(["ip", "-n", router, "-br", "link"], capture_output=True, text=True).stdout
        rules = subprocess.run(
            ["ip", "netns", "exec", router, "nft", "list", "ruleset"], capture_output=True, text=True
        ).stdout
        return (
            netns_name not in hostcheck.namespaces(server.prefix)
            and not _haproxy_pids(server.state_dir)
            and not any(p in links or p in rules for p in ports)
            and not any(a in rules for a in addresses)
        )

    wait_for(gone, 15, "load balancer removed")
    assert not any(get_ok(f"http://{a}/") for a in addresses)
    print(json.dumps({"settle_seconds": round(settle_seconds, 2), "answers": answered}))


def _diagnose(server: RootServer, lb_arn: str, vpc_id: str, target: str, seen: object) -> None:
    """What a failure needs to be understood (printed: pytest shows it with the failure)."""
    ns = f"{server.prefix}-l-{lb_arn.rsplit('/', 1)[1]}"
    router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"
    print("health:", seen)
    for command in (
        f"ip -n {ns} addr",
        f"ip -n {ns} route",
        f"ip -n {ns} rule",
        f"ip netns exec {ns} curl -sS -m 2 http://{target}/",
        f"ip netns exec {router} nft list table inet taskvpc",
    ):
        done = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
        print("$", command, "\n", done.stdout[-6000:], done.stderr[-1000:])
    log = (server.state_dir / "server.log").read_text(errors="replace").splitlines()
    print("\n".join(line for line in log if "taskvpc.agent" in line and "HTTP/1.1" not in line)[-8000:])


def get_ok(url: str) -> bool:
    try:
        return get(url, timeout=0.5)[0] == 200
    except OSError:
        return False
