"""A kill -9 of the server loses no acknowledged write (SQLite WAL and PostgreSQL alike)."""

from __future__ import annotations

import signal
import threading

from tests.integration.server import TaskvpcServer


def test_kill_9_loses_no_acknowledged_write(api: TaskvpcServer) -> None:
    ecs = api.client("ecs")
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        client = api.client("ecs")
        while not stop.is_set():
            try:
                revision = client.register_task_definition(
                    family="durable",
                    containerDefinitions=[{"name": "c", "image": "busybox", "memory": 32}],
                )["taskDefinition"]["revision"]
            except Exception:  # the server died under us: that write was never acknowledged
                return
            acknowledged.append(revision)

    ecs.create_cluster(clusterName="before-crash")
    thread = threading.Thread(target=writer)
    thread.start()
    while len(acknowledged) < 25:
        thread.join(0.01)
    api.kill(signal.SIGKILL)
    stop.set()
    thread.join(30)
    api.start()

    ecs = api.client("ecs")
    assert ecs.describe_clusters(clusters=["before-crash"])["clusters"][0]["status"] == "ACTIVE"
    listed = [
        int(arn.rpartition(":")[2])
        for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix="durable")
        for arn in page["taskDefinitionArns"]
    ]
    assert set(acknowledged) <= set(listed)
    assert listed == list(range(1, len(listed) + 1))
