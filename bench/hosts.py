#!/usr/bin/env python3
"""Many hosts: placement of many tasks over many instances, and the time from a host's loss to its
service's replacement tasks RUNNING.

``placement`` (no root): ``--instances`` container-instance snapshots (3 AZs, each with room for 10 awsvpc
tasks) and one request for ``--tasks`` tasks, placed by the scheduler's own pure ``place()`` with a
service's strategy (spread over AZs, then instances): the whole placement in one call, timed. With
``--api``, also ``--instances`` fake agents registered through the agent API of an in-process control
plane (SQLite) and RunTask calls of 10 tasks each (awsvpc: an ENI per task), timed per call; the figure
printed for ``--tasks`` is the per-call time times the calls it would take.

``loss`` (root; run under ``flock /tmp/taskvpc-root.lock``): its own ``taskvpc up`` (private state dir,
unique prefix; ``--host-loss-window`` as given, 5 s by default) with three ``c5.large`` instances
(``ECS_CLUSTER=bench``) and a service of 4 sample-web awsvpc tasks; each round deletes the namespace of
the instance holding the most tasks and kills its agent (by PID), then measures the time to its tasks
STOPPED and to the service at 4 RUNNING tasks elsewhere; a new instance replaces the lost one between
rounds. Everything is removed at the end (``taskvpc down``), even on failure.

    .venv/bin/python bench/hosts.py placement --instances 1000 --tasks 10000 [--strategy binpack] [--repeat 3]
    .venv/bin/python bench/hosts.py placement --instances 1000 --tasks 1000 --api
    sudo flock /tmp/taskvpc-root.lock .venv/bin/python bench/hosts.py loss --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ---- placement ------------------------------------------------------------------------------------


def snapshots(count: int) -> list[Any]:
    from taskvpc.scheduler.model import InstanceSnapshot

    return [
        InstanceSnapshot(
            arn=f"arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{n:032x}",
            instance_id=f"i-{n:017x}",
            availability_zone=f"us-east-1{'abc'[n % 3]}",
            remaining={"CPU": 2048 * 10, "MEMORY": 4096 * 10},
            task_eni_free=10,
            attributes={"ecs.os-type": "linux", "bench.slot": f"s{n}"},
        )
        for n in range(count)
    ]


STRATEGIES = {  # what the placement is asked for (as a service's placementStrategy)
    "spread": (
        ("spread", "attribute:ecs.availability-zone"),
        ("spread", "instanceId"),
    ),  # a service's default
    "binpack": (("binpack", "memory"),),
    "random": (("random", None),),
    "slot": (("spread", "attribute:bench.slot"),),  # an attribute with a value per instance: 1,000 cells
}


def pure_placement(instances: int, tasks: int, strategy: str = "spread") -> float:
    from taskvpc.scheduler.model import PlacementStrategy, TaskRequest
    from taskvpc.scheduler.placement import place

    request = TaskRequest(
        cpu=256,
        memory=512,
        count=tasks,
        group="service:bench",
        placement_strategy=tuple(PlacementStrategy(kind, name) for kind, name in STRATEGIES[strategy]),
    )
    pool = snapshots(instances)
    started, cpu = time.perf_counter(), time.process_time()
    placed = place(request, pool, random.Random(1))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    spread = Counter(placed.assignments)
    zones = Counter(a.rsplit("/", 1)[1] and int(a.rsplit("/", 1)[1], 16) % 3 for a in placed.assignments)
    print(
        f"pure place() ({strategy}): {len(placed.assignments)} of {tasks} tasks over {instances} instances in "
        f"{elapsed:.2f} s ({cpu:.2f} s CPU; per instance {min(spread.values())}..{max(spread.values())}, "
        f"per AZ {sorted(zones.values())})",
        flush=True,
    )
    return elapsed


def api_placement(instances: int, tasks: int, calls: int) -> float:
    """RunTask of 10 over ``instances`` fake agents registered through the agent API (in process)."""
    from taskvpc.api.app import ControlPlane, Settings
    from taskvpc.control import agent
    from taskvpc.control.ec2 import security_groups, subnets as subnet_ops
    from taskvpc.control.ecs import clusters, task_definitions, tasks as ecs_tasks
    from taskvpc.store.db import Database, sqlite_url
    from tests.integration.fake_agent import ECS_ATTRIBUTES

    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as home:
        db = Database(sqlite_url(Path(home)))
        db.migrate()
        plane = ControlPlane(Settings("000000000000", "AKIABENCHHOSTS000001", "bench-hosts-secret"), db)
        plane.prepare_region("us-east-1")

        def ctx() -> Any:
            return plane.context("us-east-1", time.time())

        clusters.create_cluster(ctx(), {"clusterName": "bench"})
        defaults = [s for s in subnet_ops.describe_subnets(ctx(), {})["Subnets"] if s.get("DefaultForAz")]
        defaults.sort(key=lambda s: s["AvailabilityZone"])
        for n in range(instances):
            made = agent.register(
                ctx(),
                {
                    "cluster": "bench",
                    "instanceId": f"i-{n:017x}",
                    "resources": {"CPU": 20480, "MEMORY": 40960},
                    "attributes": ECS_ATTRIBUTES,  # what a Linux ECS agent registers
                    "instanceType": "c5.large",
                    "maxTaskEnis": 10,
                    "subnetId": defaults[n % 3]["SubnetId"],
                },
            )
            agent.generation(ctx(), made["containerInstanceArn"].rsplit("/", 1)[1], True)  # a poll: connected
        task_definitions.register_task_definition(
            ctx(),
            {
                "family": "bench",
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [{"name": "app", "image": "busybox", "essential": True}],
            },
        )
        group = security_groups.create_security_group(ctx(), {"GroupName": "bench", "Description": "bench"})
        network = {
            "awsvpcConfiguration": {
                "subnets": [s["SubnetId"] for s in defaults],
                "securityGroups": [group["GroupId"]],
            }
        }
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            answer = ecs_tasks.run_task(
                ctx(),
                {"cluster": "bench", "taskDefinition": "bench", "count": 10, "networkConfiguration": network},
            )
            times.append(time.perf_counter() - started)
            assert len(answer["tasks"]) == 10, answer["failures"][:3]
        db.dispose()
    per_call = statistics.median(times)
    print(
        f"RunTask count=10 over {instances} registered instances: median {per_call * 1000:.0f} ms per call "
        f"({calls} calls); {tasks} tasks = {tasks // 10} calls ~ {per_call * tasks / 10:.1f} s",
        flush=True,
    )
    return per_call * tasks / 10


# ---- host loss ------------------------------------------------------------------------------------

KEY_ID, SECRET = "AKIABENCHHOSTLOSS001", "bench-hosts-loss-secret-00000000000000000"


def _server(state: Path, prefix: str, port: int, window: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKVPC_ACCESS_KEY_ID": KEY_ID, "TASKVPC_SECRET_ACCESS_KEY": SECRET}
    command = [str(REPO / ".venv" / "bin" / "taskvpc"), "up", "--port", str(port), "--state-dir", str(state)]
    command += ["--net-prefix", prefix, "--log-level", "warning", "--host-loss-window", str(window)]
    log = open(state.parent / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_taskvpc/health", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("taskvpc up did not start")


def _wait(predicate: Any, timeout: float, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit("timed out")


def host_loss(rounds: int, window: float) -> list[tuple[float, float]]:
    import boto3
    from botocore.config import Config

    from taskvpc.agent.runtime import cgroups
    from taskvpc.cli import instances as hosts
    from taskvpc.control.ec2 import instances_catalog

    prefix = "tvh" + secrets.token_hex(2)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="bench-loss-"))
    state = home / "state"
    server = _server(state, prefix, port, window)
    common: dict[str, Any] = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET,
        "config": Config(retries={"max_attempts": 1}),
    }
    ecs, ec2 = boto3.client("ecs", **common), boto3.client("ec2", **common)
    results: list[tuple[float, float]] = []
    try:
        ecs.create_cluster(clusterName="bench")

        def launch(count: int) -> None:
            ec2.run_instances(
                ImageId=instances_catalog.DEFAULT_LINUX.image_id, InstanceType="c5.large",
                MinCount=count, MaxCount=count, UserData="ECS_CLUSTER=bench",
            )  # fmt: skip

        def connected() -> dict[str, str]:
            arns = ecs.list_container_instances(cluster="bench")["containerInstanceArns"]
            found = ecs.describe_container_instances(cluster="bench", containerInstances=arns)[
                "containerInstances"
            ]
            ready = len(found) == 3 and all(c["agentConnected"] for c in found)
            return {c["containerInstanceArn"]: c["ec2InstanceId"] for c in found} if ready else {}

        def service_tasks() -> list[dict[str, Any]]:
            arns = ecs.list_tasks(cluster="bench", serviceName="keep", desiredStatus="RUNNING")["taskArns"]
            found = ecs.describe_tasks(cluster="bench", tasks=arns)["tasks"] if arns else []
            fine = len(found) == 4 and all(t["lastStatus"] == "RUNNING" for t in found)
            return found if fine else []

        launch(3)
        _wait(connected, 120)
        ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
        subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        group = ec2.create_security_group(GroupName="bench-loss", Description="bench")["GroupId"]
        network = {
            "awsvpcConfiguration": {"subnets": [s["SubnetId"] for s in subnets], "securityGroups": [group]}
        }
        ecs.create_service(
            cluster="bench", serviceName="keep", taskDefinition="linux-simple-web", desiredCount=4,
            networkConfiguration=network,
        )  # fmt: skip
        for n in range(rounds):
            ec2_of = _wait(connected, 120)
            tasks = _wait(service_tasks, 180)
            arn, _ = Counter(t["containerInstanceArn"] for t in tasks).most_common(1)[0]
            victim = ec2_of[arn]
            doomed = [t["taskArn"] for t in tasks if t["containerInstanceArn"] == arn]
            leaf = cgroups.existing(hosts.agent_cgroup_path(prefix, victim))[:1]
            pids = [int(p) for d in leaf for p in (d / "cgroup.procs").read_text().split()]
            lost = time.monotonic()
            subprocess.run(["ip", "netns", "del", hosts.netns_name(prefix, victim)], check=True)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            _wait(
                lambda doomed=doomed: all(
                    t["lastStatus"] == "STOPPED"
                    for t in ecs.describe_tasks(cluster="bench", tasks=doomed)["tasks"]
                ),
                60,
                0.05,
            )
            stopped = time.monotonic() - lost
            _wait(service_tasks, 120, 0.05)
            running = time.monotonic() - lost
            results.append((stopped, running))
            print(
                f"round {n + 1}: tasks STOPPED {stopped:.1f} s, service back at 4 RUNNING {running:.1f} s",
                flush=True,
            )
            launch(1)  # back to three instances for the next round
    finally:
        try:
            ecs.update_service(cluster="bench", service="keep", desiredCount=0)
        except Exception as exc:  # the teardown below removes everything anyway
            print(f"(service not scaled down: {exc})", file=sys.stderr)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        env = {**os.environ, "TASKVPC_ACCESS_KEY_ID": KEY_ID, "TASKVPC_SECRET_ACCESS_KEY": SECRET}
        down = subprocess.run(
            [str(REPO / ".venv" / "bin" / "taskvpc"), "down", "--state-dir", str(state), "--net-prefix", prefix],
            env=env, check=False, capture_output=True,
        )  # fmt: skip
        if down.returncode == 0:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"taskvpc down failed; logs and state in {home}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    placement = modes.add_parser("placement")
    placement.add_argument("--instances", type=int, default=1000)
    placement.add_argument("--tasks", type=int, default=10000)
    placement.add_argument("--strategy", choices=sorted(STRATEGIES), default="spread")
    placement.add_argument("--repeat", type=int, default=3, help="runs of the pure placement (median shown)")
    placement.add_argument("--api", action="store_true", help="also time RunTask through the control plane")
    placement.add_argument("--api-calls", type=int, default=20)
    loss = modes.add_parser("loss")
    loss.add_argument("--rounds", type=int, default=3)
    loss.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args()
    if args.mode == "placement":
        times = [pure_placement(args.instances, args.tasks, args.strategy) for _ in range(args.repeat)]
        print(
            f"median of {len(times)}: {statistics.median(times):.2f} s "
            f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)",
            flush=True,
        )
        if args.api:
            api_placement(args.instances, args.tasks, args.api_calls)
        return 0
    if os.geteuid() != 0:
        print("bench/hosts.py loss needs root (instances are namespaces with agents)", file=sys.stderr)
        return 1
    results = host_loss(args.rounds, args.window)
    if results:
        print(
            f"host loss -> tasks STOPPED median {statistics.median(r[0] for r in results):.1f} s; "
            f"-> replacements RUNNING median {statistics.median(r[1] for r in results):.1f} s, "
            f"max {max(r[1] for r in results):.1f} s (window {args.window:g} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
