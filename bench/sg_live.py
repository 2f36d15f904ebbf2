"""Live security-group changes: from an EC2 API call returning to the data plane enforcing it.

Run as root on a machine with nothing else of taskvpc's running (it starts its own ``taskvpc up``, like
bench/launch.py, and removes everything it made at the end):

    sudo .venv/bin/python bench/sg_live.py [--changes 200] [--tasks 1]

One task listens on port 8080 in a group open on that port; ``--tasks - 1`` more tasks in the same
group load the table. Then, alternately, RevokeSecurityGroupIngress and AuthorizeSecurityGroupIngress
of that rule; after each call returns, the host probes a *new* TCP connection to the task every
millisecond or so (a probe waits at most 2 ms for the handshake: on a veth it takes well under that) until
the result flips. Reported: p50/p99/max of call-returned -> flipped, per direction, in milliseconds.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import select
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from launch import (
    PORT,
    TASK_DEFINITION,
    address_of,
    cleanup,
    clients,
    drain,
    free_port,
    network_configuration,
    percentile,
    start_server,
    wait_for_instance,
)

RULE = [{"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def probe(address: str, wait: float = 0.002) -> bool:
    """Whether a new connection to the task completes within ``wait`` seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        code = sock.connect_ex((address, PORT))
        if code not in (0, errno.EINPROGRESS):
            return False
        _, writable, _ = select.select([], [sock], [], wait)
        return bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    finally:
        sock.close()


def time_until(address: str, expected: bool, timeout: float = 5.0) -> float:
    started = time.perf_counter()
    while probe(address) != expected:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"probe did not become {expected} within {timeout} s")
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def run(ecs: Any, ec2: Any, changes: int, tasks: int) -> dict[str, Any]:
    ecs.register_task_definition(**TASK_DEFINITION)
    network = network_configuration(ec2)
    group = network["awsvpcConfiguration"]["securityGroups"][0]
    arns: list[str] = []
    while len(arns) < tasks:
        batch = min(10, tasks - len(arns))
        arns += [
            t["taskArn"]
            for t in ecs.run_task(
                cluster="default", taskDefinition="bench-launch", networkConfiguration=network, count=batch
            )["tasks"]
        ]
    for start in range(0, len(arns), 100):
        ecs.get_waiter("tasks_running").wait(
            cluster="default", tasks=arns[start : start + 100], WaiterConfig={"Delay": 1}
        )
    address = address_of(ecs.describe_tasks(cluster="default", tasks=arns[:1])["tasks"][0])
    assert address is not None
    time_until(address, True)
    revoke, authorize = [], []
    for _ in range(changes // 2):
        ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=RULE)
        revoke.append(time_until(address, False))
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=RULE)
        authorize.append(time_until(address, True))
    return {"tasks": tasks, "revoke_ms": summary(revoke), "authorize_ms": summary(authorize)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/sg_live.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    prefix = "tvs" + secrets.token_hex(2)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="taskvpc-sglive-") as tmp:
        server = start_server(Path(tmp) / "state", prefix, port)
        try:
            ecs, ec2 = clients(port)
            wait_for_instance(ecs)
            result = run(ecs, ec2, args.changes, args.tasks)
            drain(ecs, Path(tmp) / "state")
        finally:
            server.terminate()
            server.wait(timeout=60)
            cleanup(prefix)
    print(json.dumps(result, indent=2))
    print(
        "\n| change | p50 (ms) | p99 (ms) | max (ms) |\n|---|---:|---:|---:|\n"
        + "\n".join(
            f"| {name} ({result['tasks']} tasks) | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |"
            for name, r in (("revoke", result["revoke_ms"]), ("authorize", result["authorize_ms"]))
        )
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
