#!/usr/bin/env python3
"""The control plane's cost per RunTask and per agent poll as one host fills (no agent, no root).

The control plane runs in this process (tests/integration/server.py ``InProcessServer``: the real ASGI
application, its reconcile loops and a real SQLite store in a temporary directory; requests are signed and
decoded as over HTTP, only the socket is left out). One fake container instance
(tests/integration/fake_agent.py) registers with room for every task, and the store is filled *through the
API*: RunTask(count=10) calls of awsvpc tasks, each batch then reported RUNNING by the agent, as a real
agent would. At each checkpoint (``--at``, default 100, 1,000, 5,000 running) it times, ``--reps`` times:

* **RunTask(count=10)**: the call, then the ten reported RUNNING (so the host keeps the count + 10);
* **report of 10**: that one report of the ten tasks RUNNING (one request, as the agent batches them);
* **no-change poll**: a delta poll (``since``/``have``, as the agent sends) when nothing changed;
* **one-change poll**: a delta poll after one StopTask (then the stopped task is reported STOPPED and
  replaced by one RunTask(count=1), so the count stays);
* **StopTask**: that one StopTask call;

and once per checkpoint a **StopTask burst**: ``--burst`` (200) running tasks stopped at once by
``--threads`` (4) clients, each call timed (the burst's wall time and the calls' median are printed), then
reported STOPPED and replaced, so the count stays.

It prints the medians per checkpoint and the ratios of the largest checkpoint to the smallest. The tasks
get addresses in one /18 of the default VPC in the instance's AZ (16,379 addresses).

    .venv/bin/python bench/server_growth.py --at 100 1000 5000 --reps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskvpc.agentapi.delta import digests_of, encode_have
from taskvpc.agentapi.reports import ContainerReport, TaskReport
from tests.integration.ecs_support import awsvpc, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer

BATCH = 10
AZ = "us-east-1a"


class Host:
    """The fake agent's view: generation and digests it holds, as the real agent keeps them."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        self.generation = -1
        self.digests: dict[str, str] = {}

    def poll(self, delta: bool = True) -> tuple[dict[str, Any], Timing]:
        query: dict[str, Any] = {"after": self.generation, "wait": 0}
        if delta and self.generation >= 0:
            query.update(since=self.generation, have=encode_have(self.digests))
        else:
            query["after"] = -1
        doc, elapsed = timed(
            lambda: self.agent.request("GET", f"/instances/{self.agent.id}/desired", query=urlencode(query))
        )
        self.generation = doc["generation"]
        self.digests = digests_of(doc)
        return doc, elapsed

    def running(self, arns: list[str]) -> None:
        container = (ContainerReport("web", "RUNNING", "fake"),)
        self.agent.report(*(TaskReport(arn, "RUNNING", "ATTACHED", containers=container) for arn in arns))

    def stopped(self, arns: list[str]) -> None:
        self.agent.report(*(TaskReport(arn, "STOPPED", "DETACHED") for arn in arns))


def connected_host(server: InProcessServer, capacity: int) -> tuple[Any, Host, dict[str, Any]]:
    """A fake agent's instance, registered and connected (tasks are placed on it), with the ``web`` task
    definition and an awsvpc network in a subnet of its own: (ecs, host, network configuration)."""
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    vpc = next(v for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault"))
    subnet = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.128.0/18", AvailabilityZone=AZ)
    subnet_id = subnet["Subnet"]["SubnetId"]
    agent = FakeAgent(server, max_task_enis=capacity, cpu=1 << 24, memory=1 << 28, subnet_id=subnet_id)  # type: ignore[arg-type]
    agent.register()
    host = Host(agent)
    host.poll(delta=False)
    register_web(ecs, cpu="256", memory="512")
    return ecs, host, awsvpc(subnet_id)


class Timing(NamedTuple):
    wall: float
    cpu: float  # this process's CPU time: the server's threads and the client's (less noisy when shared)


def timed(call: Callable[[], Any]) -> tuple[Any, Timing]:
    started, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Timing(time.perf_counter() - started, time.process_time() - cpu)


def stop_burst(server: InProcessServer, arns: list[str], threads: int) -> tuple[Timing, list[Timing]]:
    """StopTask of every task in ``arns`` by ``threads`` clients at once: the whole burst and each call."""
    clients = [server.client("ecs") for _ in range(threads)]
    shares = [arns[i::threads] for i in range(threads)]

    def stop_all(client: Any, share: list[str]) -> list[Timing]:
        return [timed(lambda arn=arn: client.stop_task(task=arn))[1] for arn in share]

    def burst() -> list[Timing]:
        with ThreadPoolExecutor(threads) as pool:
            return [t for calls in pool.map(stop_all, clients, shares) for t in calls]

    calls, whole = timed(burst)
    return whole, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--at", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--burst", type=int, default=200, help="StopTask calls in the burst")
    parser.add_argument("--threads", type=int, default=4, help="clients calling StopTask in the burst")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    checkpoints = sorted(args.at)
    capacity = checkpoints[-1] + (args.reps + 2) * BATCH

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="taskvpc-growth-") as tmp:
        server = InProcessServer(Path(tmp) / "state").start()
        try:
            ecs, host, network = connected_host(server, capacity)

            def run(count: int) -> tuple[list[str], Timing]:
                placed, seconds = timed(
                    lambda: ecs.run_task(taskDefinition="web", count=count, networkConfiguration=network)
                )
                if placed["failures"]:
                    raise SystemExit(f"placement failures: {placed['failures']}")
                return [t["taskArn"] for t in placed["tasks"]], seconds

            running: list[str] = []
            fill_started = time.perf_counter()
            for target in checkpoints:
                while len(running) < target:
                    arns, _ = run(min(BATCH, target - len(running)))
                    host.running(arns)
                    running += arns
                fill_s = time.perf_counter() - fill_started
                host.poll(delta=False)
                _, full_s = host.poll(delta=False)
                run_s, report_s, quiet_s, one_s, stop_s = [], [], [], [], []
                for _ in range(args.reps):
                    host.poll()
                    arns, seconds = run(BATCH)
                    run_s.append(seconds)
                    report_s.append(timed(lambda arns=arns: host.running(arns))[1])
                    running += arns
                    host.poll()
                    quiet_s.append(host.poll()[1])
                    victim = running.pop(0)
                    stop_s.append(timed(lambda victim=victim: ecs.stop_task(task=victim))[1])
                    doc, seconds = host.poll()
                    assert [t["taskArn"] for t in doc["tasks"]] == [victim], "one change, one entry"
                    one_s.append(seconds)
                    host.stopped([victim])
                    arns, _ = run(1)
                    host.running(arns)
                    running += arns

                keep = len(running)
                victims, running = running[: args.burst], running[args.burst :]
                burst_s, burst_calls = stop_burst(server, victims, args.threads)
                host.poll()
                host.stopped(victims)
                while len(running) < keep:
                    arns, _ = run(min(BATCH, keep - len(running)))
                    host.running(arns)
                    running += arns

                def ms(samples: list[Timing], part: str) -> float:
                    return statistics.median(getattr(t, part) for t in samples) * 1000

                row = {"running": len(running), "fill_s": fill_s}
                for name, samples in (
                    ("run_task", run_s),
                    ("report_10", report_s),
                    ("no_change_poll", quiet_s),
                    ("one_change_poll", one_s),
                    ("stop_task", stop_s),
                ):
                    row[f"{name}_ms"] = ms(samples, "wall")
                    row[f"{name}_cpu_ms"] = ms(samples, "cpu")
                row["burst_stop_call_ms"] = ms(burst_calls, "wall")  # (CPU is the process's: all threads')
                row["full_poll_ms"] = full_s.wall * 1000
                row["burst_ms"] = burst_s.wall * 1000
                results.append(row)
                print(
                    f"running={row['running']:5d}  RunTask(10) {row['run_task_ms']:6.1f} ms "
                    f"(cpu {row['run_task_cpu_ms']:5.1f})  report of 10 {row['report_10_ms']:5.1f} ms "
                    f"(cpu {row['report_10_cpu_ms']:4.1f})  poll: no change {row['no_change_poll_ms']:5.1f} ms "
                    f"(cpu {row['no_change_poll_cpu_ms']:4.1f}), one change {row['one_change_poll_ms']:5.1f} ms "
                    f"(cpu {row['one_change_poll_cpu_ms']:4.1f}), full {row['full_poll_ms']:7.1f} ms  "
                    f"(filled in {fill_s:.0f} s)\n"
                    f"               StopTask {row['stop_task_ms']:5.1f} ms (cpu {row['stop_task_cpu_ms']:4.1f}); "
                    f"burst of {len(burst_calls)} from {args.threads} threads {burst_s.wall:5.2f} s "
                    f"(cpu {burst_s.cpu:5.2f} s), each {row['burst_stop_call_ms']:5.1f} ms",
                    flush=True,
                )
        finally:
            server.stop()

    print(f"\nmachine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        keys = [k for k in first if k.endswith("_ms")]
        print(
            f"ratio {last['running']}/{first['running']} running: "
            + ", ".join(f"{key} {last[key] / first[key]:.2f}x" for key in keys)
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
