"""Task identity: metadata and credentials requests from inside a task, and the API's throughput with
policy enforcement on against root (issue 16's two goals).

Latency (as root, with nothing else of taskvpc's running: it starts its own ``taskvpc up``, the product's
own STS credentials, and removes everything it made at the end):

    sudo .venv/bin/python bench/identity.py latency [--requests 2000]

One awsvpc task with a task role runs; a Python client in the task's network namespace (as a container's
SDK would be) GETs ``$ECS_CONTAINER_METADATA_URI_V4/task`` and the credentials URI ``--requests`` times
each, on one kept-alive connection and with a new connection per request, interleaved. Beside them, the same client
against a baseline: a minimal asyncio HTTP server with a fixed JSON answer, run by the same Python in the
same task namespace (on its loopback) at the same time - what any asyncio server gets from this machine
at this moment. The agent's own time per request (its handler, no network) is reported from
``--requests`` calls of ``TaskEndpoints.answer`` in a copy of its state. p50/p99/max in ms. Goal:
p50 < 1 ms, p99 < 5 ms.

Enforcement (no root needed): ``bench/iam.py``'s measurement (requests per CPU-second, root key vs an
IAM user and an assumed-role session held to a realistic policy). Goal: enforced >= 80% of root.

    .venv/bin/python bench/identity.py enforcement [--seconds 2 --repeat 3 --database-url ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
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

# Runs in the task's namespace; prints {label: [ms, ...]}. argv: {label: [host, port, path]}, n.
CLIENT = """
import http.client, json, sys, time
targets, n = json.loads(sys.argv[1]), int(sys.argv[2])
labels = list(targets)
kept = {label: [] for label in labels}
fresh = {label: [] for label in labels}
conns = {label: http.client.HTTPConnection(*targets[label][:2], timeout=5) for label in labels}
for i in range(n):  # interleaved, so that the machine's load at any moment hits every target alike
    for label in labels[i % len(labels):] + labels[:i % len(labels)]:
        host, port, path = targets[label]
        t = time.perf_counter(); conns[label].request("GET", path); r = conns[label].getresponse(); r.read()
        assert r.status == 200, r.status
        kept[label].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter(); c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", path, headers={"Connection": "close"}); r = c.getresponse(); r.read(); c.close()
        assert r.status == 200, r.status
        fresh[label].append((time.perf_counter() - t) * 1000)
out = {}
for label in labels:
    out[label + ", keep-alive"] = kept[label]
    out[label + ", new connection"] = fresh[label]
print(json.dumps(out))
"""

# The baseline: the least an asyncio HTTP/1.1 server can do per request (same shape as the agent's loop).
BASELINE = """
import asyncio, json, sys
BODY = json.dumps({"RoleArn": "x" * 40, "AccessKeyId": "ASIA" + "X" * 16, "Token": "t" * 130}).encode()
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            keep = b"connection: close" not in head.lower()
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: "
                         + str(len(BODY)).encode() + b"\\r\\n\\r\\n" + BODY)
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": max(values)}


def _task_role(port: int) -> str:
    iam = boto3.client(
        "iam",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    return str(role["Arn"])


def latency(port: int, state_dir: Path, prefix: str, requests: int) -> dict[str, dict[str, float]]:
    ecs, ec2 = clients(port)
    wait_for_instance(ecs)
    ecs.register_task_definition(
        family="bench-meta",
        networkMode="awsvpc",
        taskRoleArn=_task_role(port),
        containerDefinitions=[
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:stable",
                "command": ["sleep", "600"],
                "memory": 64,
            }
        ],
    )
    arn = ecs.run_task(
        cluster="default", taskDefinition="bench-meta", networkConfiguration=network_configuration(ec2)
    )["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    task_id = arn.rsplit("/", 1)[-1]
    pid = json.loads((state_dir / "agent" / "tasks" / task_id / "app" / "pid").read_text())["pid"]
    env = dict(
        item.decode().split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"=" in item
    )
    meta = env["ECS_CONTAINER_METADATA_URI_V4"].removeprefix("http://169.254.170.2")
    netns = f"/run/netns/{prefix}-t-{task_id}"
    subprocess.run(["ip", "-n", f"{prefix}-t-{task_id}", "link", "set", "lo", "up"], check=True)
    baseline_port = 18080
    baseline = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c", BASELINE, str(baseline_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert baseline.stdout is not None and baseline.stdout.readline().strip() == "ready"
        targets = {
            "metadata /task": ["169.254.170.2", 80, f"{meta}/task"],
            "credentials": ["169.254.170.2", 80, env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]],
            "baseline asyncio server": ["127.0.0.1", baseline_port, "/"],
        }
        out = subprocess.run(
            ["nsenter", f"--net={netns}", sys.executable, "-c", CLIENT, json.dumps(targets), str(requests)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        baseline.terminate()
        baseline.wait(timeout=10)
    samples: dict[str, list[float]] = json.loads(out)
    drain(ecs, state_dir)
    return {label: summary(v) for label, v in samples.items()}


def run_latency(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench/identity.py latency needs root (it runs the agent)", file=sys.stderr)
        return 1
    os.environ.pop("TASKVPC_TASK_CREDENTIAL_VENDOR", None)  # the product's own: STS
    prefix = "tvb" + secrets.token_hex(2)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskvpc-identity-") as tmp:
        state = Path(tmp) / "state"
        server = start_server(state, prefix, port)
        try:
            result = latency(port, state, prefix, args.requests)
        finally:
            server.terminate()
            server.wait(timeout=60)
            cleanup(prefix)
    result.update(handler_cost(args.requests))
    print(
        f"\n{args.requests} GETs each; load average {os.getloadavg()[0]:.1f}\n"
        "| request | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|\n"
        + "\n".join(f"| {k} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} |" for k, r in result.items())
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def handler_cost(requests: int) -> dict[str, dict[str, float]]:
    """The agent's own work per request: ``TaskEndpoints.answer`` for the credentials and ``/task`` of a
    task like the benchmark's, with no network and no other load in the loop; wall-clock time and this
    thread's CPU time (their difference in the tail is the machine taking the CPU away, not our work)."""
    from types import SimpleNamespace

    from taskvpc.agent import netplan, taskmeta
    from taskvpc.agent.runtime import ContainerHandle
    from taskvpc.agent.taskmeta_server import TaskEndpoints
    from taskvpc.agent.taskplan import KnownTask, TaskView
    from taskvpc.agentapi.credentials import TaskCredentials
    from taskvpc.agentapi.tasks import DesiredTask

    arn = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
    desired = DesiredTask.from_wire(
        {
            "taskArn": arn,
            "desiredStatus": "RUNNING",
            "family": "bench-meta",
            "revision": 1,
            "networkMode": "awsvpc",
            "taskRoleArn": "arn:aws:iam::000000000000:role/bench",
            "containers": [{"name": "app", "image": "busybox", "memory": 64}],
        }
    )
    handles = {"app": ContainerHandle(desired.task_id, "app", "f" * 64)}
    known = KnownTask(arn, status=TaskView.RUNNING)
    worker: Any = SimpleNamespace(desired=desired, known=known, handles=handles, arn=arn)
    engine: Any = SimpleNamespace(
        workers={arn: worker}, runtime=SimpleNamespace(state_dir=Path("/nonexistent"))
    )
    endpoints = TaskEndpoints(engine, netplan.NetConfig(prefix="tvx"), secret="s" * 32, region="us-east-1")
    endpoints.set_credentials(
        (
            TaskCredentials(
                arn,
                desired.task_role_arn or "",
                "ASIA" + "X" * 16,
                "s" * 40,
                "t" * 600,
                "2030-01-01T00:00:00Z",
            ),
        )
    )
    paths = [
        endpoints.credentials_uri(desired),
        f"/v4/{taskmeta.endpoint_id(arn, 'app')}/task",
    ]
    wall: list[float] = []
    cpu: list[float] = []
    for index in range(requests):
        started, started_cpu = time.perf_counter(), time.thread_time()
        status, body = endpoints.answer(worker, "GET", paths[index % 2])
        json.dumps(body)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
        assert status == 200, (status, body)
    return {"agent handler, wall clock": summary(wall), "agent handler, CPU time": summary(cpu)}


def run_enforcement(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    import iam  # bench/iam.py: the measurement itself

    results = asyncio.run(iam._run(args))
    print("| operation | identity | requests per CPU-second | vs root |\n|---|---|---:|---:|")
    for operation, by_who in results.items():
        for who, rate in by_who.items():
            print(f"| {operation} | {who} | {rate:.0f} | {rate / by_who['root']:.0%} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    lat = sub.add_parser("latency", help="metadata and credentials from inside a task (root)")
    lat.add_argument("--requests", type=int, default=2000)
    lat.add_argument("--json", type=Path)
    enf = sub.add_parser("enforcement", help="API throughput, enforcement on vs root")
    enf.add_argument("--seconds", type=float, default=2.0)
    enf.add_argument("--repeat", type=int, default=3)
    enf.add_argument("--database-url")
    enf.add_argument("--json", type=Path)
    args = parser.parse_args()
    return run_latency(args) if args.part == "latency" else run_enforcement(args)


if __name__ == "__main__":
    sys.exit(main())
