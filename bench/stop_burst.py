#!/usr/bin/env python3
"""The control plane's share of stopping many tasks at once (no agent, no root).

The control plane runs in this process (tests/integration/server.py ``InProcessServer``, a real SQLite
store); one fake container instance (tests/integration/fake_agent.py) gets ``--tasks`` awsvpc tasks
RUNNING through the API. Then ``--stop`` of them are stopped as ``bench/density.py --stop`` does
(StopTask from ``--threads`` clients, one task per call) while an agent thread does what the real agent
does meanwhile: it polls for the desired-state deltas and reports each stopped task STOPPED, in batches
of what it learned since its last report. Printed: seconds until the StopTask calls returned and until
every task was STOPPED in the store, and the process's CPU seconds over the burst (server and clients).

    .venv/bin/python bench/stop_burst.py --tasks 2000 --stop 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server_growth import BATCH, Host, connected_host
from tests.integration.server import InProcessServer


def stopping_agent(host: Host, doomed: set[str], done: threading.Event) -> None:
    """Poll deltas; report every task whose desired status went STOPPED as STOPPED (one batch a poll)."""
    left = set(doomed)
    while left:
        doc, _ = host.poll()
        batch = [
            t["taskArn"]
            for t in doc.get("tasks", ())
            if t.get("desiredStatus") == "STOPPED" and t["taskArn"] in left
        ]
        if batch:
            host.stopped(batch)
            left -= set(batch)
        else:
            time.sleep(0.02)
    done.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--stop", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskvpc-stopburst-") as tmp:
        server = InProcessServer(Path(tmp) / "state").start()
        try:
            ecs, host, network = connected_host(server, args.tasks + 10)
            running: list[str] = []
            while len(running) < args.tasks:
                placed = ecs.run_task(
                    taskDefinition="web",
                    count=min(BATCH, args.tasks - len(running)),
                    networkConfiguration=network,
                )
                arns = [t["taskArn"] for t in placed["tasks"]]
                host.running(arns)
                running += arns
            host.poll(delta=False)
            doomed = running[: args.stop]
            done = threading.Event()
            clients = [server.client("ecs") for _ in range(args.threads)]
            shares = [doomed[i :: args.threads] for i in range(args.threads)]
            started, cpu = time.perf_counter(), time.process_time()
            watcher = threading.Thread(target=stopping_agent, args=(host, set(doomed), done), daemon=True)
            watcher.start()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(lambda c, s: [c.stop_task(task=a) for a in s], clients, shares))
            called = time.perf_counter()
            if not done.wait(120):
                raise SystemExit("the agent thread did not see every task stopped")
            left: list[Any] = []
            for i in range(0, len(doomed), 100):
                left += [
                    t
                    for t in ecs.describe_tasks(tasks=doomed[i : i + 100])["tasks"]
                    if t["lastStatus"] != "STOPPED"
                ]
            finished = time.perf_counter()
            result = {
                "tasks": args.tasks,
                "stopped": args.stop,
                "calls_s": round(called - started, 2),
                "all_stopped_s": round(finished - started, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
                "not_stopped": len(left),
            }
            print(json.dumps(result))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
