#!/usr/bin/env python3
"""Service scheduler benchmarks (issue #14).

* ``rollout``: a 4-task awsvpc service (minimumHealthyPercent 50, maximumPercent 150) on one fake agent
  (tests/integration/fake_agent.py: tasks run the moment they are asked to; no runc, so this measures
  the control plane's part), time from UpdateService to ``rolloutState COMPLETED``.
* ``reconcile``: N services of one task each, all steady, in-process on SQLite (and PostgreSQL with
  ``--postgres``): the time of one pass of the runner's ``ecs-services`` loop over all of them.

    .venv/bin/python bench/services.py rollout
    .venv/bin/python bench/services.py reconcile --services 1000 [--postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskvpc.api.app import ControlPlane, Settings
from taskvpc.control import agent as agent_api
from taskvpc.control.ecs import clusters, services, task_definitions
from taskvpc.control.reconcile import ServiceScheduler, build_runner
from taskvpc.store.db import Database, sqlite_url


def rollout(repeat: int) -> None:
    from tests.integration.ecs_support import awsvpc, default_subnets, register_web
    from tests.integration.fake_agent import FakeAgent
    from tests.integration.server import TaskvpcServer

    server = TaskvpcServer(Path(tempfile.mkdtemp(prefix="bench-services-"))).start()
    try:
        FakeAgent(server, max_task_enis=64).start(auto=True)
        ecs, ec2 = server.client("ecs"), server.client("ec2")
        revisions = [register_web(ecs)["taskDefinitionArn"] for _ in range(repeat + 1)]
        ecs.create_service(
            serviceName="web",
            taskDefinition=revisions[0],
            desiredCount=4,
            networkConfiguration=awsvpc(*default_subnets(ec2).values()),
            deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150},
        )
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        times = []
        for revision in revisions[1:]:
            started = time.monotonic()
            ecs.update_service(service="web", taskDefinition=revision)
            while ecs.describe_services(services=["web"])["services"][0]["deployments"][0][
                "rolloutState"
            ] != ("COMPLETED"):
                time.sleep(0.02)
            times.append(time.monotonic() - started)
        print(
            f"rollout of 4 tasks: median {statistics.median(times):.2f} s, max {max(times):.2f} s ({repeat} runs)"
        )
    finally:
        server.stop()


def _running(ctx: Any, instance_id: str) -> int:
    desired = agent_api.desired_state(ctx, instance_id, 0)
    items = [
        {
            "taskArn": t["taskArn"],
            "knownStatus": "RUNNING",
            "containers": [
                {"name": c["name"], "status": "RUNNING", "runtimeId": "x"} for c in t["containers"]
            ],
        }
        for t in desired["tasks"]
    ]
    agent_api.report(ctx, instance_id, {"tasks": items})
    return len(items)


def reconcile(count: int, url: str | None) -> None:
    state = Path(tempfile.mkdtemp(prefix="bench-services-"))
    db = Database(url or sqlite_url(state))
    db.migrate()
    plane = ControlPlane(Settings("123456789012", "AKIA", "secret"), db)
    plane.prepare_region("us-east-1")
    ctx = plane.context("us-east-1", time.time())
    clusters.create_cluster(ctx, {"clusterName": "default"})
    from tests.integration.fake_agent import ECS_ATTRIBUTES

    registered = agent_api.register(
        ctx,
        {
            "cluster": "default",
            "instanceId": "i-0123456789abcdef0",
            "resources": {"CPU": 10**7, "MEMORY": 10**7},
            "maxTaskEnis": 10,
            "attributes": ECS_ATTRIBUTES,
        },
    )
    instance_id = registered["containerInstanceArn"].rsplit("/", 1)[-1]
    task_definitions.register_task_definition(
        ctx,
        {
            "family": "bench",
            "networkMode": "bridge",
            "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 1, "essential": True}],
        },
    )
    for n in range(count):
        services.create_service(ctx, {"serviceName": f"s{n}", "taskDefinition": "bench", "desiredCount": 1})
    runner = build_runner(db, plane.context)
    name = ServiceScheduler().name
    _running(plane.context("us-east-1", time.time()), instance_id)  # the agent's first poll: connected
    runner.run_pass(name)  # starts every service's task
    print(f"{_running(plane.context('us-east-1', time.time()), instance_id)} tasks running")
    runner.run_pass(name)  # deployments complete, steady-state events
    times = []
    for _ in range(5):
        started = time.perf_counter()
        runner.run_pass(name)
        times.append(time.perf_counter() - started)
    backend = "PostgreSQL" if url else "SQLite"
    print(f"{count} steady services, one pass on {backend}: median {statistics.median(times):.3f} s")
    db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("rollout", "reconcile"))
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL (tests/support)")
    args = parser.parse_args()
    if args.what == "rollout":
        rollout(args.repeat)
    elif args.postgres:
        from tests.support.pgserver import ThrowawayPostgres

        with ThrowawayPostgres() as pg:
            reconcile(args.services, pg.create_database("bench_services"))
    else:
        reconcile(args.services, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
