"""VPC Flow Logs from real packets: byte counts against a known transfer, and what collecting costs.

Run as root on a machine with nothing else of taskvpc's running (it starts its own ``taskvpc up`` with
2-second aggregation windows through the test-only ``TASKVPC_FLOW_LOG_INTERVAL``, and removes
everything it made at the end):

    sudo .venv/bin/python bench/flowlogs.py [--megabytes 200] [--repeat 3]

One awsvpc task runs a receiver (Python in the task's namespace, port 8080, reads to EOF); the host sends
``--megabytes`` MB per connection, ``--repeat`` times in each mode:

1. ``no flow log``: no collection, offloads as the kernel sets them;
2. ``flow log ACCEPT``: a flow log (ACCEPT) on the task's ENI, as the agent runs it: offloads on,
   TCP counts corrected from GSO super-packets to wire segments (``flow_collect.wire_counts``);
3. ``flow log, offloads off``: the same with TSO/GSO turned off by this script on the sender (the VPC's
   host link), so conntrack sees wire-sized packets: exact counts with no correction, and what that
   would cost.

Reported per mode: throughput (MB/s, best and median of the runs) and, for the flow-log modes, the
ingress ACCEPT record of each connection summed over windows: packets and bytes, against the wire
bytes computed independently from the payload (one 52-byte IP+TCP header per 1448-byte segment, MTU
1500 with timestamps, plus the handshake and FIN). Goals (issue 17): bytes within 1 % of the transfer,
throughput cost of ACCEPT logging at most 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from launch import (
    KEY_ID,
    SECRET,
    cleanup,
    clients,
    drain,
    free_port,
    network_configuration,
    start_server,
    wait_for_instance,
)

from taskvpc.agent import netplan
from taskvpc.agent.drivers import offloads

PORT = 8080
MSS, HEADERS = 1448, 52
FORMAT = "${srcaddr} ${dstaddr} ${srcport} ${dstport} ${packets} ${bytes} ${action} ${log-status} ${flow-direction}"
RECEIVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(8)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
    c.close()
"""


def send(ip: str, size: int) -> tuple[int, float]:
    """(source port, seconds) of one connection carrying ``size`` bytes to the receiver."""
    block = b"x" * (1 << 20)
    with socket.create_connection((ip, PORT), timeout=30) as sock:
        port = sock.getsockname()[1]
        started = time.perf_counter()
        left = size
        while left:
            left -= sock.send(block[: min(left, len(block))])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the receiver's close: everything arrived
        return port, time.perf_counter() - started


def records(logs: Any, eni_id: str) -> list[list[str]]:
    try:
        events = logs.get_log_events(logGroupName="bench-flows", logStreamName=eni_id, startFromHead=True)
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [e["message"].split() for e in events["events"]]


def ingress(logs: Any, eni_id: str, port: int) -> tuple[int, int]:
    found = [r for r in records(logs, eni_id) if r[2] == str(port) and r[6] == "ACCEPT" and r[8] == "ingress"]
    return sum(int(r[4]) for r in found), sum(int(r[5]) for r in found)


def expected_wire(size: int) -> tuple[int, int]:
    segments = -(-size // MSS)
    return segments + 3, size + HEADERS * segments + 60 + 52 + 52  # + SYN, ACK, FIN


def mode(ip: str, size: int, repeat: int) -> tuple[list[int], list[float]]:
    ports, seconds = [], []
    for _ in range(repeat):
        port, took = send(ip, size)
        ports.append(port)
        seconds.append(took)
    return ports, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/flowlogs.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    os.environ["TASKVPC_FLOW_LOG_INTERVAL"] = "2"
    size = args.megabytes * 1_000_000
    prefix = "tvf" + secrets.token_hex(2)
    port = free_port()
    cfg = netplan.NetConfig(prefix=prefix)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="taskvpc-flows-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        server = start_server(state, prefix, port)
        receiver = None
        try:
            ecs, ec2 = clients(port)
            import boto3

            logs = boto3.client(
                "logs",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=SECRET,
            )
            wait_for_instance(ecs)
            ecs.register_task_definition(
                family="bench-flows",
                networkMode="awsvpc",
                containerDefinitions=[
                    {"name": "app", "image": "busybox:latest", "command": ["sleep", "3600"], "memory": 64}
                ],
            )
            arn = ecs.run_task(
                cluster="default",
                taskDefinition="bench-flows",
                networkConfiguration=network_configuration(ec2),
            )["tasks"][0]["taskArn"]
            ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
            [task] = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"]
            details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
            eni_id, ip = details["networkInterfaceId"], details["privateIPv4Address"]
            vpc_id = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0][
                "VpcId"
            ]
            task_ns = f"/run/netns/{netplan.task_netns(cfg, arn.rsplit('/', 1)[-1])}"
            receiver = subprocess.Popen(["nsenter", f"--net={task_ns}", sys.executable, "-c", RECEIVER])
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((ip, PORT), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

            ports, plain = mode(ip, size, args.repeat)
            ec2.create_flow_logs(
                ResourceType="NetworkInterface",
                ResourceIds=[eni_id],
                TrafficType="ACCEPT",
                LogGroupName="bench-flows",
                DeliverLogsPermissionArn="arn:aws:iam::000000000000:role/flow-logs",
                MaxAggregationInterval=60,
                LogFormat=FORMAT,
            )
            deadline = time.monotonic() + 30
            while not any(r[7] == "NODATA" for r in records(logs, eni_id)):  # collecting
                if time.monotonic() > deadline:
                    raise SystemExit("the collector wrote nothing")
                time.sleep(0.2)
            logged_ports, logged = mode(ip, size, args.repeat)
            offloads.set_segmentation(None, netplan.host_link(cfg, vpc_id), False)
            gso_ports, gso = mode(ip, size, args.repeat)
            offloads.set_segmentation(None, netplan.host_link(cfg, vpc_id), True)
            time.sleep(6)  # the last windows close (2 s) and their records are delivered
            want_packets, want_bytes = expected_wire(size)
            for label, used, times in (
                ("no flow log", ports, plain),
                ("flow log ACCEPT", logged_ports, logged),
                ("flow log, offloads off", gso_ports, gso),
            ):
                entry: dict[str, Any] = {
                    "MB/s best": size / min(times) / 1e6,
                    "MB/s median": size / statistics.median(times) / 1e6,
                }
                if label != "no flow log":
                    counted = [ingress(logs, eni_id, p) for p in used]
                    entry["packets"] = [p for p, _ in counted]
                    entry["bytes"] = [b for _, b in counted]
                    entry["bytes error % vs wire"] = [100 * (b - want_bytes) / want_bytes for _, b in counted]
                    entry["packets error % vs wire"] = [
                        100 * (p - want_packets) / want_packets for p, _ in counted
                    ]
                result[label] = entry
            result["expected wire"] = {"payload": size, "packets": want_packets, "bytes": want_bytes}
            drain(ecs, state)
        finally:
            if receiver is not None:
                receiver.kill()
                receiver.wait()
            server.terminate()
            server.wait(timeout=60)
            cleanup(prefix)
    print(json.dumps(result, indent=2))
    base = result["no flow log"]["MB/s median"]
    print(
        "\n| mode | MB/s (median) | cost | bytes error vs wire | packets error vs wire |\n|---|---:|---:|---:|---:|"
    )
    for label in ("no flow log", "flow log ACCEPT", "flow log, offloads off"):
        r = result[label]
        cost = 100 * (1 - r["MB/s median"] / base)
        errors = r.get("bytes error % vs wire", [])
        packet_errors = r.get("packets error % vs wire", [])
        worst = f"{max(errors, key=abs):+.3f} %" if errors else "-"
        worst_packets = f"{max(packet_errors, key=abs):+.2f} %" if packet_errors else "-"
        print(f"| {label} | {r['MB/s median']:.0f} | {cost:+.0f} % | {worst} | {worst_packets} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
