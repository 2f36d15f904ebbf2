"""Server time of the console's pages with many tasks (run by hand: `.venv/bin/python bench/console.py`).

The real control plane and console in this process (SQLite), a fake agent (tests/integration/fake_agent)
that reports every task running at once, N bridge-mode tasks on one cluster, then the cluster page and a
task page requested repeatedly through the in-process ASGI transport; prints p50/p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.console.support import Browser
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    server = InProcessServer(Path(tempfile.mkdtemp(prefix="console-bench-")))
    server.start()
    agents = []
    try:
        ecs = server.client("ecs")
        ecs.create_cluster(clusterName="default")
        ecs.register_task_definition(
            family="tiny",
            networkMode="bridge",
            containerDefinitions=[{"name": "a", "image": "busybox", "memory": 4, "cpu": 1}],
        )
        per_agent = 100
        for _ in range((args.tasks + per_agent - 1) // per_agent):
            agents.append(FakeAgent(server, cpu=100_000, memory=1_000_000).start(auto=True))
        started = 0
        while started < args.tasks:
            count = min(10, args.tasks - started)
            ran = ecs.run_task(cluster="default", taskDefinition="tiny", count=count)
            started += len(ran["tasks"])
            if not ran["tasks"]:
                raise SystemExit(f"placement failed: {ran['failures'][:1]}")
        task_id = ran["tasks"][0]["taskArn"].rsplit("/", 1)[1]
        for agent in agents:  # their polls would compete for this process's one interpreter
            agent.stop()
        agents.clear()
        assert server.transport is not None
        browser = Browser(server.transport)
        browser.sign_in()
        for name, path in (
            ("cluster page", "/console/clusters/default"),
            ("task page", f"/console/clusters/default/tasks/{task_id}"),
        ):
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                page = browser.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert page.status == 200
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            print(f"{name} with {args.tasks} tasks: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms")
    finally:
        for agent in agents:
            agent.stop()
        server.stop()


if __name__ == "__main__":
    main()
