"""What the control-plane reconcilers list and change (``taskvpc.control.reconcile``).

Each ``*_due`` query lists the keys that need work now, as ``(region, id)`` pairs, oldest first and at most
``limit`` of them; the reconciler then handles each key in a transaction of its own and re-reads it there,
so a key listed a moment ago that no longer needs work is left alone. The writes are conditional for
the same reason: the condition that made a key due is part of the ``WHERE``.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from taskvpc.store.rawsql import fetch_all
from taskvpc.store.schema import container_instances, tags, tasks

Key = tuple[str, str]  # (region, id)


def stopped_tasks_due(conn: Connection, stopped_before: float, limit: int) -> list[Key]:
    """Tasks STOPPED before ``stopped_before``: past their retention."""
    sql = (
        "SELECT region, id FROM tasks WHERE last_status = 'STOPPED' AND stopped_at < ? "
        "ORDER BY stopped_at LIMIT ?"
    )
    return [(str(r), str(i)) for r, i in fetch_all(conn, sql, (stopped_before, limit))]


def delete_stopped_task(conn: Connection, task_id: str, stopped_before: float) -> bool:
    """Delete the task (and its tags) if it is still STOPPED since before ``stopped_before``."""
    t = tasks.c
    found = conn.execute(
        select(t.arn).where(t.id == task_id, t.last_status == "STOPPED", t.stopped_at < stopped_before)
    ).first()
    if found is None:
        return False
    conn.execute(delete(tags).where(tags.c.resource_arn == found.arn))
    conn.execute(delete(tasks).where(t.id == task_id))
    return True


def silent_agents_due(conn: Connection, heard_before: float, limit: int) -> list[Key]:
    """Instances shown connected whose agent was last heard from before ``heard_before``."""
    sql = (
        "SELECT region, id FROM container_instances WHERE agent_connected = ? AND status != 'INACTIVE' "
        "AND (agent_heartbeat IS NULL OR agent_heartbeat < ?) ORDER BY agent_heartbeat LIMIT ?"
    )
    return [(str(r), str(i)) for r, i in fetch_all(conn, sql, (True, heard_before, limit))]


def mark_disconnected(conn: Connection, instance_id: str, heard_before: float) -> bool:
    """``agentConnected`` false (``version`` + 1) if the agent is still silent since ``heard_before``."""
    c = container_instances.c
    heartbeat_stale = c.agent_heartbeat.is_(None) | (c.agent_heartbeat < heard_before)
    result = conn.execute(
        update(container_instances)
        .where(c.id == instance_id, c.agent_connected.is_(True), heartbeat_stale)
        .values(agent_connected=False, version=c.version + 1)
    )
    return bool(result.rowcount)


def unattached_tasks_due(conn: Connection, created_before: float, limit: int) -> list[Key]:
    """Tasks created before ``created_before`` whose ENI no agent has attached yet (EC2 still shows it
    ``available``; attaching makes it ``in-use``): PROVISIONING, or DEPROVISIONING after a stop that came
    before the agent did."""
    sql = (
        "SELECT t.region, t.id FROM tasks t JOIN network_interfaces n ON n.id = t.eni_id "
        "WHERE t.last_status IN ('PROVISIONING', 'DEPROVISIONING') AND n.status = 'available' "
        "AND t.created_at < ? ORDER BY t.created_at LIMIT ?"
    )
    return [(str(r), str(i)) for r, i in fetch_all(conn, sql, (created_before, limit))]
