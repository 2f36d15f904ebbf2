"""Task launch benchmark: RunTask to a RUNNING task that accepts TCP on its own IP, and a 200-task burst.

Run as root on a machine with nothing else of taskvpc's running (it starts its own ``taskvpc up`` with a
private state dir and a unique name prefix, and removes everything it made at the end):

    sudo .venv/bin/python bench/launch.py [--singles 30] [--burst-calls 20] [--burst-count 10]

Single launches: one RunTask (count 1) at a time; the clock starts before the call and stops when a TCP
connection to the task's private IP and container port succeeds from the host (through the access route),
also noting when DescribeTasks first said RUNNING. The task is stopped and gone before the next one.
Burst: ``--burst-calls`` RunTask calls of ``--burst-count`` tasks each, back to back; time until all are
RUNNING, then StopTask for all and time until all are STOPPED and no task namespace is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

VENV_BIN = Path(sys.executable).parent
KEY_ID, SECRET = "AKIABENCHLAUNCH00001", "bench-launch-secret-000000000000000000000"
PORT = 8080
TASK_DEFINITION = {
    "family": "bench-launch",
    "networkMode": "awsvpc",
    "containerDefinitions": [
        {
            "name": "listener",
            "image": "busybox",
            "essential": True,
            "memory": 16,
            "entryPoint": ["busybox"],
            "command": ["httpd", "-f", "-p", str(PORT)],
            "portMappings": [{"containerPort": PORT}],
            "linuxParameters": {"initProcessEnabled": True},  # httpd as PID 1 would ignore SIGTERM
        }
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    state_dir: Path, prefix: str, port: int, runtime: str = "auto", extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKVPC_ACCESS_KEY_ID": KEY_ID, "TASKVPC_SECRET_ACCESS_KEY": SECRET}
    command = [str(VENV_BIN / "taskvpc"), "up", "--port", str(port), "--state-dir", str(state_dir)]
    command += ["--net-prefix", prefix, "--log-level", "warning", "--runtime", runtime, *(extra or [])]
    log = open(state_dir.parent / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_taskvpc/health", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("taskvpc up did not start")


def clients(port: int) -> tuple[Any, Any]:
    common: dict[str, Any] = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "config": Config(retries={"max_attempts": 1}, max_pool_connections=4),
    }
    return boto3.client("ecs", **common), boto3.client("ec2", **common)


def wait_for_instance(ecs: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ecs.list_container_instances(cluster="default")["containerInstanceArns"]:
                return
        except ecs.exceptions.ClusterNotFoundException:
            pass
        time.sleep(0.05)
    raise SystemExit("no agent registered")


def network_configuration(ec2: Any) -> dict[str, Any]:
    """The first default subnet and a group open on the task's port (security groups are enforced)."""
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]
    group = ec2.create_security_group(GroupName=f"bench-{PORT}", Description="bench listener")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    return {"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group]}}


def address_of(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail["name"] == "privateIPv4Address":
                return str(detail["value"])
    return None


def connectable(address: str) -> bool:
    try:
        with socket.create_connection((address, PORT), timeout=0.05):
            return True
    except OSError:
        return False


def single_launch(ecs: Any, network: dict[str, Any]) -> tuple[float, float]:
    started = time.perf_counter()
    arn = ecs.run_task(cluster="default", taskDefinition="bench-launch", networkConfiguration=network)[
        "tasks"
    ][0]["taskArn"]
    running_at = None
    address = None
    while True:
        task = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
        if task["lastStatus"] == "STOPPED":
            raise SystemExit(f"task stopped: {task.get('stoppedReason')}")
        if task["lastStatus"] == "RUNNING":
            running_at = time.perf_counter()
            address = address_of(task)
            break
        time.sleep(0.001)
    assert address is not None
    while not connectable(address):
        time.sleep(0.0005)
    reachable_at = time.perf_counter()
    ecs.stop_task(cluster="default", task=arn)
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 0.05})
    return (running_at - started) * 1000, (reachable_at - started) * 1000


def task_namespaces(prefix: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    return [line.split()[0] for line in listing if line.startswith(f"{prefix}-t-")]


def burst(ecs: Any, network: dict[str, Any], calls: int, count: int, prefix: str) -> dict[str, float]:
    started = time.perf_counter()
    arns: list[str] = []
    for _ in range(calls):
        response = ecs.run_task(
            cluster="default", taskDefinition="bench-launch", count=count, networkConfiguration=network
        )
        if response["failures"]:
            raise SystemExit(f"placement failures: {response['failures']}")
        arns += [task["taskArn"] for task in response["tasks"]]
    placed = time.perf_counter()
    pending = set(arns)
    while pending:
        for index in range(0, len(arns), 100):
            for task in ecs.describe_tasks(cluster="default", tasks=arns[index : index + 100])["tasks"]:
                if task["lastStatus"] == "RUNNING":
                    pending.discard(task["taskArn"])
                elif task["lastStatus"] == "STOPPED":
                    raise SystemExit(f"task stopped: {task.get('stoppedReason')}")
        time.sleep(0.02)
    all_running = time.perf_counter()
    for arn in arns:
        ecs.stop_task(cluster="default", task=arn)
    pending = set(arns)
    while pending:
        for index in range(0, len(arns), 100):
            for task in ecs.describe_tasks(cluster="default", tasks=arns[index : index + 100])["tasks"]:
                if task["lastStatus"] == "STOPPED":
                    pending.discard(task["taskArn"])
        time.sleep(0.02)
    while task_namespaces(prefix):
        time.sleep(0.02)
    all_gone = time.perf_counter()
    return {
        "tasks": len(arns),
        "run_calls_s": placed - started,
        "up_s": all_running - started,
        "down_s": all_gone - all_running,
        "total_s": all_gone - started,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def drain(ecs: Any, state_dir: Path, timeout: float = 120.0) -> None:
    """Stop every task, then wait until the agent has removed their containers (mounts, shims): a task
    is reported STOPPED before its containers are deleted, and containers outlive a stopped agent."""
    arns = ecs.list_tasks(cluster="default", desiredStatus="RUNNING").get("taskArns", [])
    for arn in arns:
        ecs.stop_task(cluster="default", task=arn)
    for start in range(0, len(arns), 100):
        ecs.get_waiter("tasks_stopped").wait(
            cluster="default", tasks=arns[start : start + 100], WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
        mounts_under(state_dir) or list(state_dir.glob("agent/tasks/*/*/pid"))
    ):
        time.sleep(0.1)


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def cleanup(prefix: str) -> None:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    for line in listing:
        if line.startswith(prefix):
            subprocess.run(["ip", "netns", "del", line.split()[0]], check=False)
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split("\n")
    for line in links:
        if line.startswith(prefix):
            # a veth's peer goes with its namespace or its other end: one already gone is not an error
            subprocess.run(
                ["ip", "link", "del", line.split()[0].partition("@")[0]],
                check=False,
                stderr=subprocess.DEVNULL,
            )
    for parent in Path("/sys/fs/cgroup").glob(f"*/taskvpc-{prefix}"):  # the agent's (empty) cgroup parent
        for directory in [*sorted((d for d in parent.rglob("*") if d.is_dir()), reverse=True), parent]:
            with contextlib.suppress(OSError):  # still holding a process: leave it, say so
                directory.rmdir()
        if parent.exists():
            print(f"left behind: {parent}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--singles", type=int, default=30)
    parser.add_argument("--burst-calls", type=int, default=20)
    parser.add_argument("--burst-count", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--runtime", default="auto", choices=("auto", "runc", "process"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/launch.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    prefix = "tvb" + secrets.token_hex(2)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskvpc-launch-") as tmp:
        server = start_server(Path(tmp) / "state", prefix, port, args.runtime)
        try:
            ecs, ec2 = clients(port)
            wait_for_instance(ecs)
            ecs.register_task_definition(**TASK_DEFINITION)
            network = network_configuration(ec2)
            single_launch(ecs, network)  # warm-up: router namespace, code paths
            singles = [single_launch(ecs, network) for _ in range(args.singles)]
            running = [r for r, _ in singles]
            reachable = [t for _, t in singles]
            result: dict[str, Any] = {
                "runtime": args.runtime,
                "singles": len(singles),
                "running_ms_p50": statistics.median(running),
                "running_ms_p99": percentile(running, 0.99),
                "reachable_ms_p50": statistics.median(reachable),
                "reachable_ms_p99": percentile(reachable, 0.99),
                "burst": burst(ecs, network, args.burst_calls, args.burst_count, prefix),
            }
            drain(ecs, Path(tmp) / "state")
        finally:
            server.terminate()
            server.wait(timeout=30)
            cleanup(prefix)
    print(json.dumps(result, indent=2))
    burst_result = result["burst"]
    print(
        f"\n| measurement | p50 | p99 |\n|---|---:|---:|\n"
        f"| RunTask → RUNNING (ms) | {result['running_ms_p50']:.1f} | {result['running_ms_p99']:.1f} |\n"
        f"| RunTask → TCP connect on task IP (ms) | {result['reachable_ms_p50']:.1f} | "
        f"{result['reachable_ms_p99']:.1f} |\n\n"
        f"Burst of {burst_result['tasks']} tasks: all RUNNING after {burst_result['up_s']:.2f} s, "
        f"all STOPPED and namespaces gone {burst_result['down_s']:.2f} s later "
        f"(total {burst_result['total_s']:.2f} s)."
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
