"""Task metadata and credentials requests from inside a task: latency at 169.254.170.2.

Run as root on a machine with nothing else of taskvpc's running (it starts its own ``taskvpc up`` with the
test credential vendor, and removes everything it made at the end):

    sudo .venv/bin/python bench/metadata.py [--requests 2000]

One awsvpc task with a task role runs; a Python client in the task's network namespace (as a container's
SDK would be) GETs ``$ECS_CONTAINER_METADATA_URI_V4/task`` and the credentials URI ``--requests`` times
each, on one kept-alive connection and with a new connection per request. Reported: p50/p99/max in ms.
Goal (issue 16): p50 < 1 ms, p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from launch import cleanup, clients, drain, free_port, network_configuration, start_server, wait_for_instance

REPO = Path(__file__).resolve().parents[1]

# Runs in the task's namespace; prints {label: [ms, ...]}.
CLIENT = """
import http.client, json, sys, time
host, paths, n = "169.254.170.2", json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for label, path in paths.items():
    conn = http.client.HTTPConnection(host, 80, timeout=5)
    kept = []
    for _ in range(n):
        t = time.perf_counter(); conn.request("GET", path); r = conn.getresponse(); r.read()
        assert r.status == 200, r.status
        kept.append((time.perf_counter() - t) * 1000)
    conn.close()
    fresh = []
    for _ in range(n):
        t = time.perf_counter(); c = http.client.HTTPConnection(host, 80, timeout=5)
        c.request("GET", path, headers={"Connection": "close"}); r = c.getresponse(); r.read(); c.close()
        assert r.status == 200, r.status
        fresh.append((time.perf_counter() - t) * 1000)
    out[label + " (keep-alive)"] = kept
    out[label + " (new connection)"] = fresh
print(json.dumps(out))
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(ecs: Any, ec2: Any, state_dir: Path, prefix: str, requests: int) -> dict[str, dict[str, float]]:
    ecs.register_task_definition(
        family="bench-meta",
        networkMode="awsvpc",
        taskRoleArn="arn:aws:iam::000000000000:role/bench",
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
    paths = {"metadata /task": f"{meta}/task", "credentials": env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]}
    netns = f"/run/netns/{prefix}-t-{task_id}"
    out = subprocess.run(
        ["nsenter", f"--net={netns}", sys.executable, "-c", CLIENT, json.dumps(paths), str(requests)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples: dict[str, list[float]] = json.loads(out)
    return {
        label: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": max(v)}
        for label, v in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/metadata.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    os.environ["TASKVPC_TASK_CREDENTIAL_VENDOR"] = "tests.support.task_vendor:vend"
    os.environ["PYTHONPATH"] = str(REPO)
    prefix = "tvb" + secrets.token_hex(2)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskvpc-meta-") as tmp:
        state = Path(tmp) / "state"
        server = start_server(state, prefix, port)
        try:
            ecs, ec2 = clients(port)
            wait_for_instance(ecs)
            result = run(ecs, ec2, state, prefix, args.requests)
            drain(ecs, state)
        finally:
            server.terminate()
            server.wait(timeout=60)
            cleanup(prefix)
    print(json.dumps(result, indent=2))
    print(
        "\n| request | p50 (ms) | p99 (ms) | max (ms) |\n|---|---:|---:|---:|\n"
        + "\n".join(f"| {k} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} |" for k, r in result.items())
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
