"""VPCs across instances over VXLAN, with real packets: two EC2 instances (RunInstances) of one cluster in
two AZs, each a real host with its own agent; tasks on one reach tasks on the other only as their
security groups allow, a group reference admits a member on the other host, no host can inject
packets with a source it does not own, and two VPCs with the same CIDR stay apart. Tasks of `taskvpc
up`'s own agent reach the instances' tasks and are reached by them, as their groups allow.

One ``taskvpc up`` for the module; probes run inside the tasks' namespaces (``ip netns exec``), so the
packets leave from the tasks' own ENIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskvpc.agentapi.overlay import UNDERLAY_ATTRIBUTE, assign_vnis, vtep_mac
from taskvpc.cli import instances as hosts
from taskvpc.control.ec2 import instances_catalog
from tests.root.crosshost_difference import EXAMPLES, Task, check_difference
from tests.root.upserver import REPO, RootServer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]
T = TypeVar("T")

# connect to (ip, port): "open" (and the first bytes of an HTTP answer), "refused" or "timeout"
_PROBE = """
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((ip, port), timeout=1.5)
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error", e)
else:
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    s.settimeout(3)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except OSError:
        pass
    print("open", data.decode(errors="replace"))
"""
# answer every TCP connection on argv[1] with argv[2]; count UDP datagrams on argv[3] into argv[4]
_SERVE = """
import socket, sys, threading
def tcp():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(16)
    while True:
        c, _ = srv.accept(); c.recv(1024); c.sendall(sys.argv[2].encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", int(sys.argv[3])))
    while True:
        data, peer = u.recvfrom(2048)
        with open(sys.argv[4], "a") as f: f.write(f"{peer[0]} {data.decode(errors='replace')}\\n")
threading.Thread(target=udp, daemon=True).start()
tcp()
"""
# from a host's namespace: one VXLAN datagram to argv[1] carrying IPv4/UDP from argv[4] to argv[5]:9999
_INJECT = """
import socket, struct, sys
dst_host, vni, macs, src, dst, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
payload = text.encode()
udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
dmac, smac = (bytes.fromhex(m.replace(":", "")) for m in macs.split(","))
frame = dmac + smac + b"\\x08\\x00" + ip + udp
vx = struct.pack("!II", 0x08000000, vni << 8)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(vx + frame, (dst_host, 4789))
"""


def _wait(predicate: Callable[[], T], timeout: float = 60.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            if not value:
                raise AssertionError(f"timed out: {what}")
            return value
        time.sleep(0.25)


def _in_ns(namespace: str, code: str, *args: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout.strip() or done.stderr.strip()


def _probe(namespace: str, ip: str, port: int) -> str:
    return _in_ns(namespace, _PROBE, ip, str(port))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import secrets

    from tests.root.upserver import clean_up

    srv = RootServer(tmp_path_factory.mktemp("crosshost") / "state", "tvx" + secrets.token_hex(2))
    try:
        yield srv.start()
    finally:
        left, mounted = clean_up(srv)
        assert not left, f"left behind: {left}"
        assert not mounted, f"mounts left behind: {mounted}"


def test_tasks_across_instances(server: RootServer, tmp_path: Path) -> None:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.create_cluster(clusterName="xh")
    server.aws(
        "ec2", "run-instances", "--count", "2", "--instance-type", "c5.4xlarge",
        "--image-id", instances_catalog.DEFAULT_LINUX.image_id, "--user-data", "ECS_CLUSTER=xh",
    )  # fmt: skip
    ids = sorted(i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"])
    listeners: list[subprocess.Popen[bytes]] = []
    try:
        _scenario(server, ids, listeners, tmp_path)
    finally:
        for process in listeners:
            process.kill()
            process.wait(timeout=10)
        ec2.terminate_instances(InstanceIds=ids)
        local = ecs.list_tasks(cluster="default")["taskArns"]  # up's own agent's, stopped before up is
        for arn in local:
            ecs.stop_task(cluster="default", task=arn)
        if local:
            ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=local, WaiterConfig={"Delay": 1})
        _wait(
            lambda: (
                [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
                == ["terminated"] * 2
            ),
            90,
            "instances terminated",
        )
        _wait(lambda: not hosts.hosts_present(server.prefix), 30, "hosts removed")
        ports = subprocess.run(
            ["ip", "-br", "link", "show", "master", hosts.underlay_bridge(server.prefix)],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        ports = [line.split()[0].partition("@")[0] for line in ports]
        assert ports == [hosts.local_underlay_port(server.prefix)], (
            "only up's own agent stays on the underlay"
        )


def _local_tasks(server: RootServer, groups: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """Sample tasks on `up`'s own agent (cluster `default`, its AZ's default subnet): name -> (namespace, IP)."""
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    assert any(a["name"] == UNDERLAY_ATTRIBUTE for a in instance["attributes"]), (
        "local agent off the underlay"
    )
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    [subnet] = ec2.describe_subnets(
        Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [zone]},
        ]
    )["Subnets"]
    arns = {}
    for name, group_ids in groups.items():
        done = ecs.run_task(
            cluster="default",
            taskDefinition="linux-simple-web",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": group_ids}},
        )  # fmt: skip
        assert done["failures"] == [], done["failures"]
        arns[name] = done["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(
        cluster="default", tasks=list(arns.values()), WaiterConfig={"Delay": 1}
    )
    found = {
        t["taskArn"]: t for t in ecs.describe_tasks(cluster="default", tasks=list(arns.values()))["tasks"]
    }
    out = {}
    for name, arn in arns.items():
        details = {d["name"]: d["value"] for d in found[arn]["attachments"][0]["details"]}
        out[name] = (f"{server.prefix}-t-{arn.rsplit('/', 1)[1]}", details["privateIPv4Address"])
    return out


def _scenario(server: RootServer, ids: list[str], listeners: list[Any], tmp_path: Path) -> None:
    ecs, ec2 = server.client("ecs"), server.client("ec2")

    def registered() -> list[dict[str, Any]]:
        arns = ecs.list_container_instances(cluster="xh")["containerInstanceArns"]
        if len(arns) < 2:
            return []
        found = ecs.describe_container_instances(cluster="xh", containerInstances=arns)["containerInstances"]
        return found if all(i["agentConnected"] for i in found) else []

    instances = _wait(registered, 90, "two container instances")
    attrs = [{a["name"]: a.get("value") for a in i["attributes"]} for i in instances]
    zone_of = {i["ec2InstanceId"]: a["ecs.availability-zone"] for i, a in zip(instances, attrs, strict=True)}
    underlay = {i["ec2InstanceId"]: a[UNDERLAY_ATTRIBUTE] for i, a in zip(instances, attrs, strict=True)}
    assert len(set(zone_of.values())) == 2 and all(underlay.values())
    first, second = ids
    zone_a, zone_b = zone_of[first], zone_of[second]

    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    default_subnet = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    }

    def group(name: str, vpc_id: str | None = None) -> str:
        extra = {"VpcId": vpc_id} if vpc_id else {}
        return str(ec2.create_security_group(GroupName=name, Description=name, **extra)["GroupId"])

    g_server, g_client, g_other = group("xh-server"), group("xh-client"), group("xh-other")
    g_peer = group("xh-peer")
    ec2.authorize_security_group_ingress(  # a group reference: members of xh-client, wherever they run
        GroupId=g_server,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": g_client}]}],
    )  # fmt: skip
    ec2.authorize_security_group_ingress(  # open: only the overlay's own checks decide for these
        GroupId=g_server,
        IpPermissions=[{"IpProtocol": "udp", "FromPort": 9999, "ToPort": 9999, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )  # fmt: skip

    def run(subnet: str, groups: list[str]) -> str:
        done = ecs.run_task(
            cluster="xh",
            taskDefinition="linux-simple-web",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": groups}},
        )
        assert done["failures"] == [], done["failures"]
        return str(done["tasks"][0]["taskArn"])

    # two VPCs with one CIDR, a subnet of each in each AZ
    overlap: dict[str, list[str]] = {}
    for name in ("xa", "xb"):
        vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
            for cidr, zone in (("10.77.1.0/24", zone_a), ("10.77.2.0/24", zone_b))
        ]
        g = group(f"xh-{name}", vpc)
        ec2.authorize_security_group_ingress(
            GroupId=g,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}],
        )  # fmt: skip
        overlap[name] = [run(subnets[0], [g]), run(subnets[1], [g])]
    groups_of = {
        "server": (g_server,),
        "peer": (g_peer, g_client),
        "client": (g_client,),
        "other": (g_other,),
    }
    arns = {
        "server": run(default_subnet[zone_a], list(groups_of["server"])),
        "peer": run(default_subnet[zone_a], list(groups_of["peer"])),
        "client": run(default_subnet[zone_b], list(groups_of["client"])),
        "other": run(default_subnet[zone_b], list(groups_of["other"])),
        "xa1": overlap["xa"][0], "xa2": overlap["xa"][1], "xb1": overlap["xb"][0], "xb2": overlap["xb"][1],
    }  # fmt: skip

    def running() -> list[dict[str, Any]]:
        found = ecs.describe_tasks(cluster="xh", tasks=list(arns.values()))["tasks"]
        return found if all(t["lastStatus"] == "RUNNING" for t in found) else []

    tasks = {t["taskArn"]: t for t in _wait(running, 180, "tasks RUNNING")}
    by_arn = {i["containerInstanceArn"]: i["ec2InstanceId"] for i in instances}
    ip, ns = {}, {}
    for name, arn in arns.items():
        task = tasks[arn]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        ip[name] = details["privateIPv4Address"]
        iid = by_arn[task["containerInstanceArn"]]
        ns[name] = f"{hosts.instance_prefix(server.prefix, iid)}-t-{arn.rsplit('/', 1)[1]}"
        assert (hosts.NETNS_DIR / ns[name]).exists(), name
    on = {name: by_arn[tasks[arn]["containerInstanceArn"]] for name, arn in arns.items()}
    assert on["server"] == on["peer"] == on["xa1"] == on["xb1"] == first
    assert on["client"] == on["other"] == on["xa2"] == on["xb2"] == second

    # a group reference admits a member on the other host; a non-member there is dropped
    page = _wait(
        lambda: (p := _probe(ns["client"], ip["server"], 80)).startswith("open") and p, 30, "client->server"
    )
    assert "Amazon ECS Sample App" in page
    assert _probe(ns["other"], ip["server"], 80) == "timeout"
    # an allowed port answers, a port no rule opens does not, until a rule opens it
    received = tmp_path / "received"
    listeners.append(
        subprocess.Popen(["ip", "netns", "exec", ns["server"], sys.executable, "-c", _SERVE, "8081", "srv", "9999", str(received)])
    )  # fmt: skip
    assert _probe(ns["client"], ip["server"], 8081) == "timeout"
    ec2.authorize_security_group_ingress(
        GroupId=g_server,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8081, "ToPort": 8081, "UserIdGroupPairs": [{"GroupId": g_client}]}],
    )  # fmt: skip
    assert _wait(lambda: _probe(ns["client"], ip["server"], 8081) == "open srv", 30, "8081 opened")
    # the other instance's host reaches none of this one's tasks (only its own)
    assert not _probe(hosts.netns_name(server.prefix, second), ip["server"], 80).startswith("open")

    # `taskvpc up`'s own agent is on the overlay too: its tasks and the instances' meet as groups allow
    local = _local_tasks(server, {"both": [g_server, g_client], "other": [g_other]})
    assert _wait(lambda: _probe(local["both"][0], ip["server"], 80).startswith("open"), 30, "local->server")
    assert _probe(local["other"][0], ip["server"], 80) == "timeout"
    assert _probe(ns["client"], local["both"][1], 80).startswith("open")  # and from an instance to it
    assert _probe(ns["other"], local["both"][1], 80) == "timeout"

    # anti-spoofing across the overlay: host B may speak only for its own tasks
    vni = assign_vnis([v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]])[
        ec2.describe_subnets(SubnetIds=[default_subnet[zone_a]])["Subnets"][0]["VpcId"]
    ]
    macs = f"{vtep_mac(underlay[first])},{vtep_mac(underlay[second])}"
    host_b = hosts.netns_name(server.prefix, second)
    spoofed = str(ip["server"])  # host A's own task, then an address nobody holds, then host B's task
    unused = ".".join([*ip["client"].split(".")[:3], str((int(ip["client"].split(".")[3]) + 77) % 250 + 2)])
    for src, text in ((spoofed, "spoof-a"), (unused, "spoof-unused"), (ip["client"], "legit")):
        _in_ns(host_b, _INJECT, underlay[first], str(vni), macs, src, ip["server"], text)
    lines = _wait(lambda: received.exists() and received.read_text().splitlines(), 10, "legit datagram")
    time.sleep(0.5)  # the spoofed ones, were they let through, would have come by now
    assert [line.split() for line in received.read_text().splitlines()] == [[ip["client"], "legit"]], lines

    # two VPCs with the same CIDR: each reaches its own peer on the other host, never the other VPC's
    for name in ("xa2", "xb2"):
        listeners.append(
            subprocess.Popen(["ip", "netns", "exec", ns[name], sys.executable, "-c", _SERVE, "8000", name, "9998", str(tmp_path / name)])
        )  # fmt: skip
    assert _wait(lambda: _probe(ns["xa1"], ip["xa2"], 8000) == "open xa2", 30, "xa1->xa2")
    assert _wait(lambda: _probe(ns["xb1"], ip["xb2"], 8000) == "open xb2", 30, "xb1->xb2")
    if ip["xa2"] != ip["xb2"]:  # the other VPC's address is nobody's here
        assert _probe(ns["xa1"], ip["xb2"], 8000) != "open xb2"

    # proof by difference across the overlay (crosshost_difference.py): drawn rules for the default VPC's
    # groups; every flow between a task on one instance and a task on the other, as the evaluator says
    default = ec2.describe_subnets(SubnetIds=list(default_subnet.values()))["Subnets"]
    vpc_cidr = ec2.describe_vpcs(VpcIds=[default[0]["VpcId"]])["Vpcs"][0]["CidrBlock"]
    cidrs = ["0.0.0.0/0", vpc_cidr, *(s["CidrBlock"] for s in default), "192.0.2.0/24"]
    cidrs += [f"{ip[name]}/32" for name in groups_of]
    tasks_ = {name: Task(ns[name], ip[name], groups, on[name]) for name, groups in groups_of.items()}
    stats = check_difference(ec2, tasks_, cidrs, _probe)
    print(f"\ncross-host difference: {dict(stats)}")
    assert stats["examples"] == EXAMPLES and stats["allowed"] and stats["denied"], stats
