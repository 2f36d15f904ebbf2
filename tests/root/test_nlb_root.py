"""A network load balancer for real: `taskvpc up` as root, awsvpc tasks behind a TCP listener, boto3.

One `taskvpc up` for the module. The NLB has two subnets (two AZs' default subnets, so two ENIs in one
namespace) and a group admitting the host; its targets are
tasks whose group admits only the NLB's group (flows reach them SNATed to the NLB's address, see
agent/nlb.py). Connections from the host to either NLB address reach both serving tasks (a flow arriving
on the second ENI leaves by it, or the router's reverse-path check would drop it); a task with nothing
listening refuses the TCP checks, turns unhealthy with Target.FailedHealthChecks and gets no flow;
deleting the NLB leaves nothing on the host.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from tests.root import hostcheck
from tests.root.lbfixtures import (
    allow,
    diagnose,
    get,
    get_ok,
    health,
    host_connects,
    lb_addresses,
    network,
    run_tasks,
    server,
    task_definition,
    task_ips,
    task_pid,
    wait_for,
)
from tests.root.upserver import RootServer

__all__ = ["server"]

pytestmark = [pytest.mark.root]

FAMILY = "nlb-web"
HOST = "169.254.100.1"  # the host's address on every VPC's access link: what a VPC sees for it


def test_nlb_spreads_over_healthy_tasks_and_leaves_nothing(server: RootServer) -> None:
    ecs, elbv2 = server.client("ecs"), server.client("elbv2")
    ecs.register_task_definition(**task_definition(FAMILY))
    net = network(server, "nlb")
    home, other, vpc_id, nlb_sg, behind_sg = net.home, net.other, net.vpc_id, net.lb_group, net.behind_group
    serving = run_tasks(server, FAMILY, home, [behind_sg], 2)
    [closed] = run_tasks(server, FAMILY, home, [behind_sg], 1, mode="closed")

    lb = elbv2.create_load_balancer(
        Name="tcp", Type="network", Subnets=[home, other], SecurityGroups=[nlb_sg]
    )["LoadBalancers"][0]
    tg = elbv2.create_target_group(
        Name="tcp",
        Protocol="TCP",
        Port=80,
        VpcId=vpc_id,
        TargetType="ip",
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,  # the NLB default (10 s) exceeds the interval
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
    )["TargetGroups"][0]
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="TCP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    registered = time.monotonic()
    elbv2.register_targets(
        TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": ip} for ip in [*serving, closed]]
    )
    addresses = [
        a["PrivateIPv4Address"]
        for z in elbv2.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]])["LoadBalancers"][0][
            "AvailabilityZones"
        ]
        for a in z.get("LoadBalancerAddresses", [])
    ]
    assert len(addresses) == 2, addresses

    def settled() -> dict[str, dict[str, str]] | None:
        seen = health(elbv2, tg["TargetGroupArn"])
        done = all(seen[ip]["State"] == "healthy" for ip in serving) and seen[closed]["State"] == "unhealthy"
        return seen if done else None

    try:
        seen = wait_for(settled, 40, "targets settled")
    except AssertionError:
        print("health:", health(elbv2, tg["TargetGroupArn"]))
        diagnose(server, lb["LoadBalancerArn"])
        raise
    settle_seconds = time.monotonic() - registered
    assert seen[closed]["Reason"] == "Target.FailedHealthChecks"
    assert seen[closed]["Description"] == "Health checks failed"

    # New connections from the host to each NLB address reach both serving tasks and never the closed one.
    answered: dict[str, int] = {}
    for address in addresses:
        by_address: dict[str, int] = {}
        for _ in range(16):
            status, body = get(f"http://{address}/")
            assert status == 200, (address, status, body)
            by_address[body] = by_address.get(body, 0) + 1
            answered[body] = answered.get(body, 0) + 1
        assert set(by_address) == set(serving), (address, by_address)
    assert not any(host_connects(ip) for ip in serving)  # only the NLB's group is admitted

    # Connection termination: two connections wait mid-request while every serving target is deregistered.
    # During the delay one still gets its answer; once the delay ended the other's flow is gone (reset).
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"},
            {"Key": "deregistration_delay.connection_termination.enabled", "Value": "true"},
        ],
    )
    during, after = (_half_request(addresses[1]) for _ in range(2))
    elbv2.deregister_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": ip} for ip in serving])
    with during:
        during.sendall(b"\r\n")
        assert b" 200 " in during.recv(4096).split(b"\r\n")[0]
    wait_for(lambda: not set(serving) & set(health(elbv2, tg["TargetGroupArn"])), 30, "delay ended")
    log = server.log_path

    def terminated() -> set[str]:
        # each target's delay has its own timer: wait for both, or `after` may sit on the later one
        lines = [
            line for line in log.read_text(errors="replace").splitlines() if "nlb flows terminated" in line
        ]
        return {ip for line in lines for ip in line.partition(" targets=")[2].split(" ")[0].split(",")}

    wait_for(lambda: set(serving) <= terminated(), 20, "flows terminated")
    with after, pytest.raises(ConnectionResetError):
        after.sendall(b"\r\n")
        after.recv(4096)
        after.recv(4096)  # the reset may arrive after the request went out

    lb_id = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    netns_name = f"{server.prefix}-l-{lb_id}"
    assert netns_name in hostcheck.namespaces(server.prefix)
    elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"

    def gone() -> bool:
        rules = subprocess.run(
            ["ip", "netns", "exec", router, "nft", "list", "ruleset"], capture_output=True, text=True
        ).stdout
        return netns_name not in hostcheck.namespaces(server.prefix) and not any(
            a in rules for a in addresses
        )

    wait_for(gone, 15, "load balancer removed")
    assert not any(get_ok(f"http://{a}/") for a in addresses)
    print(json.dumps({"settle_seconds": round(settle_seconds, 2), "answers": answered}))


def test_preserve_client_ip_shows_targets_the_clients_address(server: RootServer) -> None:
    """With `preserve_client_ip.enabled` off the target's peer is the NLB's address; on, it is the client's
    (the host's link address), and the reply still finds its way back through the NLB's DNAT."""
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**task_definition(FAMILY))
    net = network(server, "keep")
    allow(ec2, net.behind_group, {"IpRanges": [{"CidrIp": f"{HOST}/32"}]})  # the client, once it shows
    [ip] = run_tasks(server, FAMILY, net.home, [net.behind_group], 1)
    arns = ecs.list_tasks(cluster="default", desiredStatus="RUNNING")["taskArns"]
    [arn] = [a for a, found in task_ips(ecs, arns).items() if found == ip]
    lb = elbv2.create_load_balancer(
        Name="keep", Type="network", Subnets=[net.home], SecurityGroups=[net.lb_group]
    )["LoadBalancers"][0]
    [address] = lb_addresses(ec2, net.vpc_id, lb["LoadBalancerArn"])
    tg = elbv2.create_target_group(
        Name="keep", Protocol="TCP", Port=80, VpcId=net.vpc_id, TargetType="ip",
        HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
    )["TargetGroups"][0]  # fmt: skip
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="TCP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": ip}])
    pid = task_pid(server, arn)
    router = f"{server.prefix}-r-{net.vpc_id.removeprefix('vpc-')}"
    table = f"tvnlb_{lb['LoadBalancerArn'].rsplit('/', 1)[1]}"

    def peer_seen() -> str | None:
        """The address the target sees for a connection held open through the NLB (and its answer)."""
        try:
            with _half_request(address) as conn:
                peers = _peers(pid)
                conn.sendall(b"\r\n")
                answer = b"".join(iter(lambda: conn.recv(4096), b""))
        except OSError:
            return None
        return peers[0] if len(peers) == 1 and answer.endswith(ip.encode() + b"\n") else None

    try:
        assert wait_for(peer_seen, 20, "served with preserve off") == address
        elbv2.modify_target_group_attributes(
            TargetGroupArn=tg["TargetGroupArn"],
            Attributes=[{"Key": "preserve_client_ip.enabled", "Value": "true"}],
        )
        assert (
            wait_for(lambda: peer if (peer := peer_seen()) == HOST else None, 20, "client address seen")
            == HOST
        )
        assert table in _router_tables(router)
        # The target's group judges the client's own address now: without the rule naming the host, the
        # NLB's group alone admits the checks but not the client.
        ec2.revoke_security_group_ingress(
            GroupId=net.behind_group,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": f"{HOST}/32"}]}
            ],
        )
        wait_for(
            lambda: not host_connects(address, timeout=1.0), 10, "the client refused by the target's group"
        )
        assert health(elbv2, tg["TargetGroupArn"])[ip]["State"] == "healthy"  # checks still from the NLB
        elbv2.modify_target_group_attributes(
            TargetGroupArn=tg["TargetGroupArn"],
            Attributes=[{"Key": "preserve_client_ip.enabled", "Value": "false"}],
        )
        assert wait_for(lambda: peer if (peer := peer_seen()) == address else None, 20, "NLB address again")
        assert table not in _router_tables(router)
    except AssertionError:
        diagnose(server, lb["LoadBalancerArn"], (f"ip netns exec {router} nft list table ip {table}",))
        raise
    finally:
        elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    wait_for(lambda: table not in _router_tables(router), 15, "router table removed")


def _peers(pid: int) -> list[str]:
    """Peer addresses of the established connections to port 80 inside the task's network namespace."""
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ss", "-Htn", "state", "established", "( sport = :80 )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    peers = [line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()]
    return [p.strip("[]").removeprefix("::ffff:") for p in peers]  # httpd listens dual-stack


def _router_tables(router: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", router, "nft", "list", "tables"], capture_output=True, text=True
    ).stdout


def _half_request(address: str) -> socket.socket:
    """A connection to the NLB holding a request without its final blank line (httpd waits for it)."""
    conn = socket.create_connection((address, 80), timeout=5)
    conn.sendall(b"GET / HTTP/1.0\r\nHost: nlb\r\n")
    return conn
