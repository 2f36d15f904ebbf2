"""Load balancers across the agent's life, for real: `taskvpc up` as root, an ALB and an NLB, boto3.

One `taskvpc up` for the module. An ALB (HTTP) and an NLB (TCP and TLS: the TLS listener is an HAProxy in
the NLB's namespace) in front of two busybox tasks. Killing the agent by PID: `taskvpc up` starts a new
one, which adopts both load balancers: they serve throughout, each keeps its one HAProxy master (reloaded
once, new workers), and no nft table is doubled. DeleteLoadBalancer of the NLB takes its namespace and
HAProxy; stopping `taskvpc up` leaves the ALB serving (adopted by the next agent, like tasks) and
`taskvpc down` then leaves no namespace, link, nft table, HAProxy, process or mount of the prefix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taskvpc.agent.runtime.procs import cmdline
from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.lbfixtures import (
    get,
    get_ok,
    haproxy_pids,
    health,
    run_tasks,
    server,
    task_definition,
    wait_for,
)
from tests.root.test_lb_tls_udp_root import https_get
from tests.root.upserver import RootServer

__all__ = ["server"]  # the module's `taskvpc up` (a fixture of lbfixtures)

pytestmark = [pytest.mark.root]

CERTIFICATE = "arn:aws:acm:us-east-1:000000000000:certificate/5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"


def agent_pids(state_dir: Path) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and (args := cmdline(int(p)))
        and "taskvpc.agent.main" in " ".join(args)
        and str(state_dir) in " ".join(args)
    ]


def masters(state_dir: Path) -> dict[int, int]:
    """HAProxy masters of the test's agent: network namespace inode -> master pid (a worker's parent is its
    master). Two masters in one namespace would show as one key: so the count is checked separately."""
    pids = haproxy_pids(state_dir)
    found = [p for p in pids if _parent(p) not in pids]
    assert len(found) == len({_netns(p) for p in found}), f"two HAProxy masters in one namespace: {found}"
    return {_netns(p): p for p in found}


def workers(state_dir: Path) -> set[int]:
    pids = haproxy_pids(state_dir)
    return {p for p in pids if _parent(p) in pids}


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _netns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def nft_tables(netns: str) -> list[str]:
    listed = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True, text=True
    )
    return listed.stdout.split("\n")


class Traffic:
    """Requests through each load balancer in a loop (a thread) while the agent restarts: every failure."""

    def __init__(self, checks: dict[str, Callable[[], None]]) -> None:
        self.checks = checks
        self.failures: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, check in self.checks.items():
                try:
                    check()
                except Exception as error:  # every failure is the finding
                    self.failures.append(f"{name}: {error!r}")
            self.rounds += 1
            time.sleep(0.05)


def test_agent_restart_adopts_load_balancers_and_down_leaves_nothing(server: RootServer) -> None:
    ecs, ec2, elbv2 = server.client("ecs"), server.client("ec2"), server.client("elbv2")
    ecs.register_task_definition(**task_definition("lb-life"))
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    home = next(s for s in subnets if s["AvailabilityZone"] == zone)
    other = next(s for s in subnets if s["AvailabilityZone"] != zone)
    vpc_id = home["VpcId"]

    lb_sg = ec2.create_security_group(GroupName="lbs", Description="lbs", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=lb_sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
            for p in (80, 443)
        ],
    )
    behind = ec2.create_security_group(GroupName="behind", Description="behind", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=behind,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": lb_sg}]}
        ],
    )
    tasks = sorted(run_tasks(server, "lb-life", home["SubnetId"], [behind], 2))

    checks = {"HealthCheckIntervalSeconds": 5, "HealthCheckTimeoutSeconds": 2, "HealthyThresholdCount": 2}
    web = elbv2.create_target_group(
        Name="web", Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="ip", **checks
    )["TargetGroups"][0]["TargetGroupArn"]
    tcp = elbv2.create_target_group(
        Name="tcp", Protocol="TCP", Port=80, VpcId=vpc_id, TargetType="ip", **checks
    )["TargetGroups"][0]["TargetGroupArn"]
    alb = elbv2.create_load_balancer(
        Name="web", Subnets=[home["SubnetId"], other["SubnetId"]], SecurityGroups=[lb_sg]
    )["LoadBalancers"][0]
    nlb = elbv2.create_load_balancer(
        Name="tcp", Type="network", Subnets=[home["SubnetId"]], SecurityGroups=[lb_sg]
    )["LoadBalancers"][0]
    for lb, protocol, port, tg in ((alb, "HTTP", 80, web), (nlb, "TCP", 80, tcp), (nlb, "TLS", 443, tcp)):
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
            **({"Certificates": [{"CertificateArn": CERTIFICATE}]} if protocol == "TLS" else {}),
        )
    for tg in (web, tcp):
        elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": ip} for ip in tasks])
    wait_for(
        lambda: all(all(h["State"] == "healthy" for h in health(elbv2, tg).values()) for tg in (web, tcp)),
        40,
        "targets healthy",
    )
    path = alb["LoadBalancerArn"].split(":loadbalancer/")[1]
    [alb_address, *_] = sorted(
        e["PrivateIpAddress"]
        for e in ec2.describe_network_interfaces(
            Filters=[{"Name": "description", "Values": [f"ELB {path}"]}]
        )["NetworkInterfaces"]
    )
    [nlb_address] = [
        a["PrivateIPv4Address"]
        for z in elbv2.describe_load_balancers(LoadBalancerArns=[nlb["LoadBalancerArn"]])["LoadBalancers"][0][
            "AvailabilityZones"
        ]
        for a in z.get("LoadBalancerAddresses", [])
    ]

    def served(address: str) -> None:
        status, body = get(f"http://{address}/")
        assert status == 200 and body in tasks, (status, body)

    def tls() -> None:
        assert https_get(nlb_address)[1].decode().strip() in tasks

    probes = {"alb": lambda: served(alb_address), "nlb": lambda: served(nlb_address), "nlb-tls": tls}

    def answering(probe: Callable[[], None]) -> bool:
        try:
            probe()
            return True
        except (OSError, AssertionError):
            return False

    for name, probe in probes.items():  # verdicts are reported once in force: served at once
        assert answering(probe), f"{name} not serving right after healthy"
    before, old_workers = masters(server.state_dir), workers(server.state_dir)
    assert len(before) == 2  # the ALB's and the NLB's TLS listener's
    nlb_ns = f"{server.prefix}-l-{nlb['LoadBalancerArn'].rsplit('/', 1)[1]}"
    alb_ns = f"{server.prefix}-l-{alb['LoadBalancerArn'].rsplit('/', 1)[1]}"
    router = f"{server.prefix}-r-{vpc_id.removeprefix('vpc-')}"

    # Kill the agent by PID: `taskvpc up` starts another, which adopts both LBs while they keep serving.
    with Traffic(probes) as traffic:
        [old_agent] = agent_pids(server.state_dir)
        os.kill(old_agent, signal.SIGKILL)
        wait_for(lambda: agent_pids(server.state_dir) not in ([], [old_agent]), 30, "a new agent")
        # Adopted: each master reloaded once by the new agent (new workers), none started beside it.
        wait_for(lambda: not workers(server.state_dir) & old_workers, 30, "HAProxy reloaded by the new agent")
        time.sleep(1.0)
    assert traffic.rounds > 5 and not traffic.failures, traffic.failures[:10]
    assert masters(server.state_dir) == before
    tables = [t for t in nft_tables(nlb_ns) if t.startswith("table")]
    assert tables == [f"table ip tvnlb_{nlb['LoadBalancerArn'].rsplit('/', 1)[1]}"], tables
    assert [t for t in nft_tables(alb_ns) if t.startswith("table")] == []
    assert nft_tables(router).count("table inet taskvpc") == 1

    # DeleteLoadBalancer takes the NLB's namespace, its table and its TLS HAProxy; the ALB stays.
    elbv2.delete_load_balancer(LoadBalancerArn=nlb["LoadBalancerArn"])
    wait_for(
        lambda: nlb_ns not in hostcheck.namespaces(server.prefix) and len(masters(server.state_dir)) == 1,
        20,
        "NLB removed",
    )
    assert alb_ns in hostcheck.namespaces(server.prefix)
    assert not get_ok(f"http://{nlb_address}/")
    served(alb_address)

    # `taskvpc up` stops: the ALB keeps serving (the next agent would adopt it); `taskvpc down` removes it all.
    server.stop()
    served(alb_address)
    down = subprocess.run(
        [
            str(VENV_BIN / "taskvpc"),
            "down",
            "--state-dir",
            str(server.state_dir),
            "--net-prefix",
            server.prefix,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert (
        hostcheck.wait_clean(server.prefix) == []
    )  # namespaces, links, addresses, routes, nft tables, cgroups
    assert not haproxy_pids(server.state_dir)
    assert not agent_pids(server.state_dir)
    assert hostcheck.mounts_under(server.state_dir) == []
    assert not get_ok(f"http://{alb_address}/")
