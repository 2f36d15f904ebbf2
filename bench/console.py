"""The console's budgets, measured (run by hand: `.venv/bin/python bench/console.py`).

1. Page server time with many tasks: the real control plane and console in this process (SQLite), a fake
   agent (tests/integration/fake_agent) that reports every task running at once, N bridge-mode tasks on
   one cluster, then the cluster page and a task page requested repeatedly through the in-process ASGI
   transport; prints p50/p95 in milliseconds.
2. A change reaching an open page (``--changes``, needs Debian's chromium): `taskvpc up --no-agent` with a
   fake agent, the cluster page open in a real browser (Playwright), then one task at a time the fake
   agent reports RUNNING and the bench times from just before that report until the page's row shows
   RUNNING (a MutationObserver-free wait: Playwright polls the DOM on every animation frame, so the
   figure includes that round trip too); prints p50/p95 and the worst.
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
from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, InProcessServer, TaskvpcServer

# The row of one task on the cluster page shows RUNNING (the live list's swap has landed).
_ROW_RUNNING = """id => {
  const link = [...document.querySelectorAll("#tasks a")].find(a => a.href.endsWith("/tasks/" + id));
  const status = link && link.closest("tr").querySelector(".status");
  return status !== null && status !== undefined && status.textContent.trim() === "RUNNING";
}"""


def _percentiles(times: list[float]) -> str:
    times = sorted(times)
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    return f"p50 {statistics.median(times):.0f} ms, p95 {p95:.0f} ms, max {times[-1]:.0f} ms (n={len(times)})"


def live_changes(changes: int) -> None:
    """Time from a fake agent's report to the open cluster page showing it, ``changes`` times."""
    from playwright.sync_api import sync_playwright

    from tests.console.chromium import CHROMIUM, FLAGS

    server = TaskvpcServer(Path(tempfile.mkdtemp(prefix="console-live-")) / "state").start()
    agent = FakeAgent(server)
    try:
        ecs = server.client("ecs")
        ecs.create_cluster(clusterName="default")
        ecs.register_task_definition(
            family="tiny",
            networkMode="bridge",
            containerDefinitions=[{"name": "a", "image": "busybox", "memory": 4, "cpu": 1}],
        )
        agent.start(auto=False, wait=5.0)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_context().new_page()
            page.goto(server.endpoint + "/console/signin")
            page.get_by_label("Access key ID").fill(ACCESS_KEY_ID)
            page.get_by_label("Secret access key").fill(SECRET_ACCESS_KEY)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="Clusters").wait_for()
            times = []
            for _ in range(changes):
                [task] = ecs.run_task(cluster="default", taskDefinition="tiny")["tasks"]
                arn = task["taskArn"]
                agent.wait_for_task(arn)
                task_id = arn.rsplit("/", 1)[1]
                if page.url != server.endpoint + "/console/clusters/default":
                    page.goto(server.endpoint + "/console/clusters/default")
                page.wait_for_function(
                    _ROW_RUNNING.replace("RUNNING", "PENDING"), arg=task_id, timeout=10_000
                )
                time.sleep(0.3)  # the page is idle, as a user's would be, before the change arrives
                t0 = time.perf_counter()
                agent.running(arn)
                page.wait_for_function(_ROW_RUNNING, arg=task_id, polling="raf", timeout=10_000)
                times.append((time.perf_counter() - t0) * 1000)
            browser.close()
        print(f"a task's RUNNING reaching the open cluster page: {_percentiles(times)}")
    finally:
        agent.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--changes", type=int, default=0, help="also time N changes reaching an open page")
    args = parser.parse_args()
    if args.changes:
        live_changes(args.changes)
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
