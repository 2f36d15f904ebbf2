"""An instance's live tasks are read through its index, not past every task the instance ever ran.

With ``last_status != 'STOPPED'`` SQLite's planner took the (container_instance_id, desired_generation)
index and read the row of every task the instance had run, stopped ones included: each agent poll and
each RunTask or StopTask cost more as the history grew, and the server's memory grew with it (the
30-minute soak, bench/soak.py). The work measured here is SQLite's own (virtual machine steps, counted by
its progress handler), so the test is not timed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert

from taskvpc.store import tasks_repo
from taskvpc.store.db import Database, sqlite_url
from taskvpc.store.schema import tasks

INSTANCE = "inst-live"
LIVE = {
    "PROVISIONING": 2,
    "PENDING": 2,
    "RUNNING": 10,
    "STOPPING": 1,
    "DEPROVISIONING": 1,
}  # both sides of STOPPED
LIVE_COUNT = sum(LIVE.values())
CPU, MEMORY = 256, 512


@pytest.fixture()
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(sqlite_url(tmp_path))
    db.migrate()
    yield db
    db.dispose()


def _add(db: Database, status: str, count: int, first: int, instance: str = INSTANCE) -> None:
    rows = [
        {
            "id": f"{instance}-{status.lower()}-{n}",
            "region": "us-east-1",
            "cluster": "default",
            "arn": f"arn:aws:ecs:us-east-1:000000000000:task/default/{instance}-{n}",
            "container_instance_id": instance,
            "family": "web",
            "task_group": "family:web",
            "launch_type": "EC2",
            "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
            "last_status": status,
            "version": 1,
            "cpu": CPU,
            "memory": MEMORY,
            "created_at": float(n),
            "updated_at": float(n),
            "stopped_at": float(n) if status == "STOPPED" else None,
            "body": json.dumps({"lastStatus": status, "padding": "x" * 2000}),  # rows as big as real ones
            "spec": "{}",
            "desired_generation": n,
        }
        for n in range(first, first + count)
    ]
    with db.transaction() as conn:
        conn.execute(insert(tasks), rows)


def _steps(db: Database, read: Callable[[Connection], Any]) -> tuple[int, Any]:
    """SQLite virtual machine steps ``read`` takes (in units of 10), and what it returned."""
    with db.read() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        ticks = [0]

        def tick() -> int:
            ticks[0] += 1
            return 0  # go on

        raw.set_progress_handler(tick, 10)
        try:
            result = read(conn)
        finally:
            raw.set_progress_handler(None, 10)
    return ticks[0], result


def _usage_unchanged(conn: Connection) -> bool:
    """refresh_usage against an instance whose recorded usage is right: it reads and writes nothing."""
    instance = {
        "id": INSTANCE,
        "cpu_used": CPU * LIVE_COUNT,
        "memory_used": MEMORY * LIVE_COUNT,
        "eni_used": 0,
        "running_count": LIVE["RUNNING"],
        "pending_count": LIVE["PROVISIONING"] + LIVE["PENDING"],
    }
    return not tasks_repo.refresh_usage(conn, instance)


READS: dict[str, Callable[[Connection], Any]] = {
    "tasks_on_instance": lambda conn: sorted(
        t["last_status"] for t in tasks_repo.tasks_on_instance(conn, INSTANCE)
    ),
    "live_task_count": lambda conn: tasks_repo.live_task_count(conn, INSTANCE),
    "refresh_usage": _usage_unchanged,
    # an agent's delta poll that holds the newest generation: nothing changed, nothing to read
    "tasks_changed_since": lambda conn: tasks_repo.tasks_changed_since(conn, INSTANCE, 100_000),
}


def test_live_tasks_of_an_instance_cost_the_same_after_a_thousand_stopped(database: Database) -> None:
    first = 0
    for status, count in LIVE.items():
        _add(database, status, count, first)
        first += count
    _add(database, "STOPPED", 10, first)
    _add(database, "RUNNING", 50, 0, instance="inst-other")  # another instance's tasks are not its own
    expected = sorted(s for s, count in LIVE.items() for _ in range(count))

    before = {name: _steps(database, read) for name, read in READS.items()}
    _add(database, "STOPPED", 1000, 10_000)
    after = {name: _steps(database, read) for name, read in READS.items()}

    for name in READS:
        (steps_before, result_before), (steps_after, result_after) = before[name], after[name]
        assert result_before == result_after, name
        # a B-tree a level deeper may add a few steps; a read of each stopped task's row adds 1,000s
        assert steps_after <= steps_before * 1.5 + 5, (name, steps_before, steps_after)
    assert before["tasks_on_instance"][1] == expected
    assert before["live_task_count"][1] == LIVE_COUNT
    assert before["refresh_usage"][1] is True
    assert before["tasks_changed_since"][1] == ([], [])
