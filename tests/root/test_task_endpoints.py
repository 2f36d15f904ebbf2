"""169.254.170.2 for real: `taskvpc up` as root (STS's own task credentials, no stand-in vendor), two
awsvpc tasks with a task role that allows ``ecs:ListClusters`` only, and no egress rule.

Inside a task (busybox wget in the container, and the task's own namespace for the rest): metadata v4
matches DescribeTasks for the ENI, MAC, IP, subnet and gateway; the credentials URI answers the task's
role credentials; stats come from the container's cgroup; the API is reachable at ``AWS_ENDPOINT_URL``.
The unmodified ``aws`` CLI of the host, run in the task's network namespace with nothing but the
container's environment (no keys, no config file), finds the role's credentials at 169.254.170.2 and
calls taskvpc through it: GetCallerIdentity is ``assumed-role/app/<task id>``, ListClusters works,
CreateCluster is denied with ECS's AccessDeniedException text. Another task knowing the URI gets 400;
the host reaches nothing at 169.254.170.2, even with a route.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskvpc.agent import netplan
from tests.integration.server import ACCOUNT_ID
from tests.root import hostcheck
from tests.root.test_walkthrough import agent_pids, wait_for
from tests.root.upserver import RootServer, kill_task_shims

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/app"
TRUST_ECS_TASKS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
LIST_CLUSTERS_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}],
}
SCRIPT = (
    'wget -qO- "$ECS_CONTAINER_METADATA_URI_V4/task"; echo; '
    'wget -qO- "169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"; echo; exec sleep 600'
)

# Run by the host's python inside a task's namespace: GET each URL, print [status, body] per line.
PROBE = """
import sys, json, urllib.request, urllib.error
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            print(json.dumps([r.status, r.read().decode()]))
    except urllib.error.HTTPError as e:
        print(json.dumps([e.code, e.read().decode()]))
    except OSError as e:
        print(json.dumps([0, repr(e)]))
"""


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootServer]:
    monkeypatch.delenv("TASKVPC_TASK_CREDENTIAL_VENDOR", raising=False)  # the product's own: STS
    prefix = "tvm" + secrets.token_hex(2)
    server = RootServer(tmp_path / "state", prefix)
    try:
        yield server.start()
    finally:
        server.stop()
        kill_task_shims(server.state_dir)
        hostcheck.unmount_under(server.state_dir)
        hostcheck.scrub(prefix)
        left = hostcheck.wait_clean(prefix)
        assert not left, f"left behind: {left}"


def probe(netns_path: str, *urls: str) -> list[tuple[int, str]]:
    out = subprocess.run(
        ["nsenter", f"--net={netns_path}", "/usr/bin/python3", "-c", PROBE, *urls],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


def container_env(state_dir: Path, task_id: str, name: str) -> dict[str, str]:
    pid = json.loads((state_dir / "agent" / "tasks" / task_id / name / "pid").read_text())["pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def log_lines(state_dir: Path, task_id: str, name: str, count: int) -> list[str]:
    path = state_dir / "agent" / "tasks" / task_id / name / "log"
    deadline = time.monotonic() + 20
    while True:
        lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _message(line: str) -> str:
    """A container log line is JSON (json-file driver) or plain text."""
    try:
        doc = json.loads(line)
    except ValueError:
        return line
    return str(doc.get("log", line)) if isinstance(doc, dict) else line


def aws_in(netns_path: str, env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The host's unmodified ``aws`` CLI in a task's network namespace with only the container's AWS
    environment: no keys, no profile, no config file (an empty HOME)."""
    keep = {k: v for k, v in env.items() if k.startswith(("AWS_", "ECS_"))}
    clean = {"PATH": os.environ["PATH"], "HOME": str(home), **keep}
    if "PYENV_ROOT" in os.environ:
        clean["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    return subprocess.run(
        ["nsenter", f"--net={netns_path}", "aws", *args, "--output", "json"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def register_meta(server: RootServer) -> None:
    iam = server.client("iam")
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS))
    iam.put_role_policy(RoleName="app", PolicyName="list", PolicyDocument=json.dumps(LIST_CLUSTERS_ONLY))
    server.client("ecs").register_task_definition(
        family="meta",
        networkMode="awsvpc",
        taskRoleArn=ROLE,
        cpu="256",
        memory="256",
        containerDefinitions=[
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:stable",
                "entryPoint": ["sh", "-c"],
                "command": [SCRIPT],
                "memory": 128,
                "essential": True,
            }
        ],
    )


def test_metadata_credentials_and_api_from_inside_tasks(server: RootServer) -> None:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    register_meta(server)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]
    group = ec2.create_security_group(GroupName="closed", Description="no rules at all")["GroupId"]
    ec2.revoke_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    run = ecs.run_task(
        cluster="default",
        taskDefinition="meta",
        count=2,
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group]}
        },
    )
    assert run["failures"] == [], run["failures"]  # placed: the agent has task-iam-role now
    arns = [t["taskArn"] for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    tasks = ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]
    cidr = ipaddress.IPv4Network(subnet["CidrBlock"])
    cfg = netplan.NetConfig(prefix=server.prefix)
    state = server.state_dir

    docs = []
    for task in tasks:
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        first, second = [_message(x) for x in log_lines(state, task_id, "app", 2)[:2]]
        meta = json.loads(first)  # what busybox wget got inside the container
        assert meta["TaskARN"] == task["taskArn"]
        assert (meta["Family"], meta["Revision"], meta["LaunchType"]) == ("meta", "1", "EC2")
        assert meta["AvailabilityZone"] == task["availabilityZone"]
        assert meta["Cluster"] == task["clusterArn"]
        net = meta["Containers"][0]["Networks"][0]
        assert net["NetworkMode"] == "awsvpc"
        assert net["IPv4Addresses"] == [details["privateIPv4Address"]]
        assert net["MACAddress"] == details["macAddress"]
        assert net["PrivateDNSName"] == details["privateDnsName"]
        assert net["IPv4SubnetCIDRBlock"] == subnet["CidrBlock"]
        assert net["SubnetGatewayIpv4Address"] == f"{cidr.network_address + 1}/{cidr.prefixlen}"
        assert meta["Containers"][0]["DockerId"] == task["containers"][0]["runtimeId"]
        creds = json.loads(second)
        assert creds["RoleArn"] == ROLE and creds["AccessKeyId"].startswith("ASIA")
        assert creds["Token"] and creds["Expiration"].endswith("Z")  # an STS session, ISO 8601
        docs.append((task_id, container_env(state, task_id, "app"), meta))

    (a_id, a_env, _), (b_id, _, _) = docs
    a_ns = f"{cfg.netns_dir}/{netplan.task_netns(cfg, a_id)}"
    b_ns = f"{cfg.netns_dir}/{netplan.task_netns(cfg, b_id)}"
    a_creds = "http://169.254.170.2" + a_env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    a_meta = a_env["ECS_CONTAINER_METADATA_URI_V4"]
    assert a_env["AWS_REGION"] == a_env["AWS_DEFAULT_REGION"] == "us-east-1"

    # from A's own namespace: stats from the cgroup and the namespace's counters; the API
    (status, body), (tstatus, tbody), (hstatus, _), (own, _) = probe(
        a_ns,
        f"{a_meta}/stats",
        f"{a_meta}/task/stats",
        f"{a_env['AWS_ENDPOINT_URL']}/_taskvpc/health",
        a_creds,
    )
    assert status == 200 and own == 200
    stats = json.loads(body)
    assert stats["memory_stats"]["usage"] > 0 and stats["pids_stats"]["current"] >= 1
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["networks"]["eth0"]["rx_bytes"] > 0
    a_runtime_id = next(t for t in tasks if t["taskArn"].endswith(a_id))["containers"][0]["runtimeId"]
    assert tstatus == 200 and list(json.loads(tbody)) == [a_runtime_id]
    assert hstatus == 200  # taskvpc's API through 169.254.170.2:<port>, though the group allows no egress

    # the unmodified aws CLI in A's namespace, with A's container environment only
    home = server.state_dir / "empty-home"
    home.mkdir()
    who = aws_in(a_ns, a_env, home, "sts", "get-caller-identity")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/app/{a_id}"
    listed = aws_in(a_ns, a_env, home, "ecs", "list-clusters")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["clusterArns"] == [f"arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/default"]
    refused = aws_in(a_ns, a_env, home, "ecs", "create-cluster", "--cluster-name", "x")
    assert refused.returncode != 0
    assert (
        "An error occurred (AccessDeniedException) when calling the CreateCluster operation: User: "
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/app/{a_id} is not authorized to perform: ecs:CreateCluster "
        f"on resource: arn:aws:ecs:us-east-1:{ACCOUNT_ID}:cluster/x because no identity-based policy allows "
        "the ecs:CreateCluster action"
    ) in refused.stderr

    # from B's namespace: A's credentials and A's metadata are not B's
    (cstatus, cbody), (mstatus, _) = probe(b_ns, a_creds, f"{a_meta}/task")
    assert cstatus == 400 and json.loads(cbody)["code"] == "InvalidIdInRequest"
    assert mstatus == 404

    # from the host: nothing at 169.254.170.2, even routed into the VPC's router over its access link
    vpc_id = subnet["VpcId"]
    link = netplan.host_link(cfg, vpc_id)
    subprocess.run(["ip", "route", "add", "169.254.170.2/32", "dev", link], check=True)
    try:
        ((hstatus, hbody),) = probe("/proc/self/ns/net", "http://169.254.170.2/v2/credentials/x")
    finally:
        subprocess.run(["ip", "route", "del", "169.254.170.2/32", "dev", link], check=False)
    assert hstatus == 0, hbody  # dropped in the router (timeout), never answered

    ecs.stop_task(cluster="default", task=arns[0])
    ecs.stop_task(cluster="default", task=arns[1])
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})


def test_a_restarted_agent_serves_the_adopted_task_under_the_same_uris(server: RootServer) -> None:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    register_meta(server)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    arn = ecs.run_task(
        cluster="default",
        taskDefinition="meta",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}},
    )["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    task_id = arn.rsplit("/", 1)[-1]
    env = container_env(server.state_dir, task_id, "app")
    cfg = netplan.NetConfig(prefix=server.prefix)
    ns = f"{cfg.netns_dir}/{netplan.task_netns(cfg, task_id)}"
    urls = (
        env["ECS_CONTAINER_METADATA_URI_V4"],
        "http://169.254.170.2" + env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
    )
    assert [status for status, _ in probe(ns, *urls)] == [200, 200]

    [old_agent] = agent_pids(server)
    os.kill(old_agent, 9)
    wait_for(lambda: agent_pids(server) not in ([], [old_agent]))
    answers: list[tuple[int, str]] = []

    def served() -> bool:
        answers[:] = probe(ns, *urls)
        return [status for status, _ in answers] == [200, 200]

    wait_for(served, timeout=30)  # the new agent adopted the task: same ids, same credentials URI
    assert json.loads(answers[0][1])["Name"] == "app"
    assert json.loads(answers[1][1])["RoleArn"] == ROLE
    ecs.stop_task(cluster="default", task=arn)
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
