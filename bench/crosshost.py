"""Task-to-task throughput and latency across instances (VXLAN) against on one instance.

Run as root (it starts its own ``taskvpc up`` with a private state dir and a unique name prefix inside
a throwaway network namespace, and removes everything it made at the end, even on failure):

    sudo .venv/bin/python bench/crosshost.py [--seconds 3] [--repeat 3] [--pings 2000]

Two ``c5.4xlarge`` instances (RunInstances) in two AZs of the default VPC; task A1 and A2 on the first,
B1 on the second, all in one security group that admits its own members (a group reference). A Python
sink/echo server runs in A2's and B1's namespaces, the client in A1's (``ip netns exec``; the packets
leave from the tasks' ENIs, through their routers' security groups, and for B1 through the overlay):

* throughput: one TCP stream, 256 KiB writes for ``--seconds``, bytes counted by the receiver;
* latency: ``--pings`` one-byte request/answer round trips on one connection (median and p99).

Same-host and cross-host runs alternate ``--repeat`` times; the medians are printed. Python moves the
bytes (iperf3 is not installed here), so these are the path's numbers under the same client, not a NIC's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from launch import KEY_ID, SECRET, free_port, start_server

from taskvpc.cli import instances as hosts
from taskvpc.control.ec2 import instances_catalog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support import hostns  # noqa: E402 - the repository root is on the path only now

PORT = 5201  # written into SERVER and CLIENT
SERVER = """
import socket, threading
def serve(c):
    kind = c.recv(1)
    if kind == b"T":
        total, buf = 0, bytearray(1 << 20)
        while n := c.recv_into(buf):
            total += n
        c.sendall(str(total).encode())
    else:
        while b := c.recv(1):
            c.sendall(b)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(8)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = """
import socket, sys, time, json
ip, seconds, pings = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((ip, 5201), timeout=10); c.sendall(b"T")
chunk = memoryview(bytearray(256 * 1024)); end = time.perf_counter() + seconds; start = time.perf_counter()
while time.perf_counter() < end:
    c.sendall(chunk)
c.shutdown(socket.SHUT_WR); total = int(c.recv(64)); took = time.perf_counter() - start; c.close()
p = socket.create_connection((ip, 5201), timeout=10); p.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
p.sendall(b"P"); rtts = []
for _ in range(pings):
    t = time.perf_counter(); p.sendall(b"x"); p.recv(1); rtts.append(time.perf_counter() - t)
p.close(); rtts.sort()
print(json.dumps({"gbit": total * 8 / took / 1e9, "rtt_p50_us": rtts[len(rtts) // 2] * 1e6,
                  "rtt_p99_us": rtts[int(len(rtts) * 0.99)] * 1e6}))
"""


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out: {what}")


def setup(ecs: Any, ec2: Any, prefix: str) -> dict[str, tuple[str, str]]:
    """The instances and tasks; name -> (task namespace, address)."""
    ecs.create_cluster(clusterName="bench")
    ec2.run_instances(
        ImageId=instances_catalog.DEFAULT_LINUX.image_id,
        InstanceType="c5.4xlarge",
        MinCount=2,
        MaxCount=2,
        UserData="ECS_CLUSTER=bench",
    )

    def registered() -> list[dict[str, Any]]:
        arns = ecs.list_container_instances(cluster="bench")["containerInstanceArns"]
        if len(arns) < 2:
            return []
        found = ecs.describe_container_instances(cluster="bench", containerInstances=arns)[
            "containerInstances"
        ]
        return found if all(i["agentConnected"] for i in found) else []

    instances = wait(registered, 120, "two instances")
    zones = sorted(
        {a["value"] for i in instances for a in i["attributes"] if a["name"] == "ecs.availability-zone"}
    )
    subnet = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    }
    group = ec2.create_security_group(GroupName="bench-x", Description="members talk")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]}]
    )
    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    arns = {}
    for name, zone in (("A1", zones[0]), ("A2", zones[0]), ("B1", zones[1])):
        done = ecs.run_task(
            cluster="bench",
            taskDefinition="linux-simple-web",
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [subnet[zone]], "securityGroups": [group]}
            },
        )
        assert not done["failures"], done["failures"]
        arns[name] = done["tasks"][0]["taskArn"]

    def running() -> list[dict[str, Any]]:
        found = ecs.describe_tasks(cluster="bench", tasks=list(arns.values()))["tasks"]
        return found if all(t["lastStatus"] == "RUNNING" for t in found) else []

    tasks = {t["taskArn"]: t for t in wait(running, 180, "tasks running")}
    by_arn = {i["containerInstanceArn"]: i["ec2InstanceId"] for i in instances}
    out = {}
    for name, arn in arns.items():
        task = tasks[arn]
        ip = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "privateIPv4Address")
        iid = by_arn[task["containerInstanceArn"]]
        out[name] = (f"{hosts.instance_prefix(prefix, iid)}-t-{arn.rsplit('/', 1)[1]}", ip)
    return out


def measure(client_ns: str, ip: str, seconds: float, pings: int) -> dict[str, float]:
    done = subprocess.run(
        ["ip", "netns", "exec", client_ns, sys.executable, "-c", CLIENT, ip, str(seconds), str(pings)],
        capture_output=True, text=True, timeout=seconds + 120, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pings", type=int, default=2000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/crosshost.py needs root (it runs agents)", file=sys.stderr)
        return 1
    prefix = "tvc" + secrets.token_hex(2)
    port = free_port()
    runs: dict[str, list[dict[str, float]]] = {"same host": [], "across hosts (VXLAN)": []}
    with tempfile.TemporaryDirectory(prefix="taskvpc-xh-") as tmp, hostns.throwaway():
        state = Path(tmp) / "state"
        state.mkdir()
        server = start_server(state, prefix, port)
        servers: list[subprocess.Popen[bytes]] = []
        common: dict[str, Any] = {
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region_name": "us-east-1",
            "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET,
            "config": Config(retries={"max_attempts": 1}),
        }
        ecs, ec2 = boto3.client("ecs", **common), boto3.client("ec2", **common)
        try:
            tasks = setup(ecs, ec2, prefix)
            for name in ("A2", "B1"):
                servers.append(
                    subprocess.Popen(["ip", "netns", "exec", tasks[name][0], sys.executable, "-c", SERVER])
                )
            time.sleep(1.0)
            for _ in range(args.repeat):
                runs["same host"].append(measure(tasks["A1"][0], tasks["A2"][1], args.seconds, args.pings))
                runs["across hosts (VXLAN)"].append(
                    measure(tasks["A1"][0], tasks["B1"][1], args.seconds, args.pings)
                )
        finally:
            for process in servers:
                process.kill()
                process.wait(timeout=10)
            try:
                ids = [
                    i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
                ]
                if ids:
                    ec2.terminate_instances(InstanceIds=ids)
                    wait(lambda: not hosts.hosts_present(prefix), 120, "instances removed")
            finally:
                server.terminate()
                server.wait(timeout=60)
                hosts.remove_all(prefix, state)
    summary = {
        label: {key: statistics.median(r[key] for r in rs) for key in ("gbit", "rtt_p50_us", "rtt_p99_us")}
        for label, rs in runs.items()
    }
    print(json.dumps({"median": summary, "runs": runs}, indent=2))
    same, cross = summary["same host"], summary["across hosts (VXLAN)"]
    print("\n| path | Gbit/s (1 TCP stream) | RTT p50 µs | RTT p99 µs |\n|---|---:|---:|---:|")
    for label, row in summary.items():
        print(f"| {label} | {row['gbit']:.2f} | {row['rtt_p50_us']:.0f} | {row['rtt_p99_us']:.0f} |")
    print(f"\nacross hosts / same host throughput: {100 * cross['gbit'] / same['gbit']:.0f}% (goal ≥ 70%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
