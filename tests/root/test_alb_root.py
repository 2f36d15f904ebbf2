"""An application load balancer for real: `taskvpc up` as root, awsvpc tasks behind it, boto3 driving it.

One `taskvpc up` for the module. The ALB spans two AZs' default subnets (the local agent runs it whatever
its own AZ); its targets are tasks whose group admits only the ALB's group, so the host reaches them
through the ALB and not directly; a task answering 500 and one whose group does not admit the ALB turn
unhealthy with ELB's reasons and get no traffic; deleting the ALB leaves nothing on the host.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.root import hostcheck
from tests.root.lbfixtures import (
    diagnose,
    get,
    get_ok,
    haproxy_pids,
    health,
    host_connects,
    network,
    run_tasks,
    server,
    task_definition,
    wait_for,
)
from tests.root.upserver import RootServer

__all__ = ["server"]

pytestmark = [pytest.mark.root]

FAMILY = "alb-web"


def test_alb_routes_to_healthy_tasks_only_and_leaves_nothing(server: RootServer) -> None:
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**task_definition(FAMILY))
    net = network(server, "alb")
    home, other, vpc_id, alb_sg, behind_sg = net.home, net.other, net.vpc_id, net.lb_group, net.behind_group
    default_sg = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]

    good = run_tasks(server, FAMILY, home, [behind_sg], 3)
    [bad] = run_tasks(server, FAMILY, home, [behind_sg], 1, mode="bad")
    [walled] = run_tasks(server, FAMILY, home, [default_sg], 1)  # its group does not admit the ALB's

    lb = elbv2.create_load_balancer(Name="web", Subnets=[home, other], SecurityGroups=[alb_sg])[
        "LoadBalancers"
    ][0]
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
        router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"
        ns = f"{server.prefix}-l-{lb['LoadBalancerArn'].rsplit('/', 1)[1]}"
        print("health:", health(elbv2, tg["TargetGroupArn"]))
        diagnose(
            server,
            lb["LoadBalancerArn"],
            (
                f"ip -n {ns} rule",
                f"ip netns exec {ns} curl -sS -m 2 http://{good[0]}/",
                f"ip netns exec {router} nft list table inet taskvpc",
            ),
        )
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
    assert haproxy_pids(server.state_dir)
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
            and not haproxy_pids(server.state_dir)
            and not any(p in links or p in rules for p in ports)
            and not any(a in rules for a in addresses)
        )

    wait_for(gone, 15, "load balancer removed")
    assert not any(get_ok(f"http://{a}/") for a in addresses)
    print(json.dumps({"settle_seconds": round(settle_seconds, 2), "answers": answered}))
