#!/usr/bin/env python3
"""The real agent's CPU per task as the host fills, for this tree and (``--before DIR``) another one.

As root, like bench/launch.py (whose server start, clients and cleanup it reuses): ``taskvpc up`` with its
local agent (``--runtime``, default process), then RunTask calls of ``--batch`` tasks until ``--tasks`` run,
each batch waited for until RUNNING; the agent process's CPU time (utime + stime from /proc) over each
batch, divided by the batch, is its CPU per task at that many running. Then StopTask for all: CPU per
task stopped and the time until all are STOPPED. ``--before DIR`` runs the same against the source tree in
DIR first (``git archive main | tar -x -C DIR``; put on PYTHONPATH for the server and its agent).

    sudo .venv/bin/python bench/deltas_agent.py --tasks 300 --before /tmp/taskvpc-main
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import launch  # bench/launch.py, beside this file


def agent_pid(prefix: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"taskvpc.agent.main" in argv and prefix.encode() in argv:
                return int(entry.name)
        time.sleep(0.1)
    raise SystemExit("no agent process found")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_status(ecs: Any, arns: list[str], status: str) -> None:
    pending = set(arns)
    while pending:
        for index in range(0, len(arns), 100):
            for task in ecs.describe_tasks(cluster="default", tasks=arns[index : index + 100])["tasks"]:
                if task["lastStatus"] == status:
                    pending.discard(task["taskArn"])
                elif task["lastStatus"] == "STOPPED":
                    raise SystemExit(f"task stopped: {task.get('stoppedReason')}")
        time.sleep(0.02)


def run(label: str, tree: str | None, tasks: int, batch: int, runtime: str) -> dict[str, Any]:
    if tree is not None:
        os.environ["PYTHONPATH"] = tree
    else:
        os.environ.pop("PYTHONPATH", None)
    os.chdir(
        tempfile.gettempdir()
    )  # ``python -m`` (the agent) would import taskvpc from the working directory
    prefix = "tvx" + secrets.token_hex(2)
    port = launch.free_port()
    per_task: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="taskvpc-deltas-agent-") as tmp:
        (Path(tmp) / "state").mkdir()
        server = launch.start_server(Path(tmp) / "state", prefix, port, runtime)
        try:
            ecs, ec2 = launch.clients(port)
            launch.wait_for_instance(ecs)
            pid = agent_pid(prefix)
            ecs.register_task_definition(**launch.TASK_DEFINITION)
            network = launch.network_configuration(ec2)
            launch.single_launch(ecs, network)  # warm-up
            arns: list[str] = []
            while len(arns) < tasks:
                before = cpu_seconds(pid)
                placed = ecs.run_task(
                    cluster="default",
                    taskDefinition="bench-launch",
                    count=batch,
                    networkConfiguration=network,
                )
                new = [t["taskArn"] for t in placed["tasks"]]
                if placed["failures"]:
                    raise SystemExit(f"placement failures: {placed['failures']}")
                wait_status(ecs, new, "RUNNING")
                time.sleep(0.2)  # the agent's last reports and polls of the batch
                per_task.append((len(arns) + len(new), (cpu_seconds(pid) - before) * 1000 / len(new)))
                arns += new
            before, started = cpu_seconds(pid), time.monotonic()
            for arn in arns:
                ecs.stop_task(cluster="default", task=arn)
            for index in range(0, len(arns), 100):
                wait_status(ecs, arns[index : index + 100], "STOPPED")
            stop_s = time.monotonic() - started
            stop_ms = (cpu_seconds(pid) - before) * 1000 / len(arns)
            launch.drain(ecs, Path(tmp) / "state")
        finally:
            server.terminate()
            server.wait(timeout=60)
            launch.cleanup(prefix)

    def near(n: int) -> float:
        return statistics.median(ms for count, ms in per_task if abs(count - n) <= 2 * batch)

    result = {
        "label": label,
        "start_ms_per_task": {n: near(n) for n in (batch * 2, tasks // 2, tasks) if n <= tasks},
        "stop_ms_per_task": stop_ms,
        "stop_all_s": stop_s,
    }
    print(result, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--runtime", default="process", choices=("auto", "runc", "process"))
    parser.add_argument("--before", default=None, help="another source tree, measured first")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/deltas_agent.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    if args.before:
        run("before", args.before, args.tasks, args.batch, args.runtime)
    run("after", None, args.tasks, args.batch, args.runtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
