"""Reads and writes of container instances, their attributes, tasks and idempotency tokens.

Plain functions over a Connection, no ECS rules. Rows come back as dicts of their columns with ``body``
(and a task's ``spec``) already parsed. Hot reads run as plain SQL (see ``rawsql``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, update

from taskvpc.store.ecs_repo import dumps, loads
from taskvpc.store.rawsql import execute, fetch_all, fetch_one, placeholders
from taskvpc.store.schema import container_instance_attributes, container_instances, idempotency, tasks

Row = dict[str, Any]

# ---- clusters -------------------------------------------------------------------------------------


def lock_cluster(conn: Connection, region: str, name: str) -> None:
    """Serialise writers of one cluster (placement, counters). SQLite's BEGIN IMMEDIATE already does."""
    if conn.dialect.name == "postgresql":
        fetch_one(conn, "SELECT id FROM clusters WHERE region = ? AND name = ? FOR UPDATE", (region, name))


_CLUSTER_COUNTS = (
    "SELECT "
    "(SELECT COUNT(*) FROM container_instances WHERE region = ? AND cluster = ? AND status != 'INACTIVE'), "
    "(SELECT COUNT(*) FROM tasks WHERE region = ? AND cluster = ? AND last_status = 'RUNNING'), "
    "(SELECT COUNT(*) FROM tasks WHERE region = ? AND cluster = ? "
    "AND last_status IN ('PROVISIONING', 'PENDING', 'ACTIVATING'))"
)


def cluster_counts(conn: Connection, region: str, cluster: str) -> tuple[int, int, int]:
    """(registered container instances, RUNNING tasks, pending tasks) of a cluster."""
    row = fetch_one(conn, _CLUSTER_COUNTS, (region, cluster) * 3)
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# ---- container instances --------------------------------------------------------------------------

_INSTANCE_COLUMNS = (
    "id",
    "region",
    "cluster",
    "arn",
    "ec2_instance_id",
    "status",
    "agent_heartbeat",
    "agent_connected",
    "registered_at",
    "version",
    "generation",
    "availability_zone",
    "subnet_id",
    "vpc_id",
    "cpu_registered",
    "memory_registered",
    "eni_capacity",
    "cpu_used",
    "memory_used",
    "eni_used",
    "running_count",
    "pending_count",
    "body",
)
_SELECT_INSTANCE = f"SELECT {', '.join(_INSTANCE_COLUMNS)} FROM container_instances"


def _instance(row: Sequence[Any]) -> Row:
    out = dict(zip(_INSTANCE_COLUMNS, row, strict=True))
    out["body"] = loads(out["body"])
    out["agent_connected"] = bool(out["agent_connected"])  # SQLite answers 0/1
    return out


def insert_instance(conn: Connection, row: Row) -> None:
    conn.execute(insert(container_instances).values(**{**row, "body": dumps(row["body"])}))


def get_instance(conn: Connection, instance_id: str) -> Row | None:
    row = fetch_one(conn, _SELECT_INSTANCE + " WHERE id = ?", (instance_id,))
    return _instance(row) if row else None


def get_instances(conn: Connection, region: str, cluster: str, instance_ids: Iterable[str]) -> dict[str, Row]:
    wanted = list(dict.fromkeys(instance_ids))
    if not wanted:
        return {}
    sql = _SELECT_INSTANCE + f" WHERE region = ? AND cluster = ? AND id IN ({placeholders(len(wanted))})"
    return {r["id"]: r for r in map(_instance, fetch_all(conn, sql, (region, cluster, *wanted)))}


def find_by_ec2_instance(conn: Connection, region: str, cluster: str, ec2_instance_id: str) -> Row | None:
    """The registered (not INACTIVE) container instance of that EC2 instance in the cluster, if any."""
    sql = _SELECT_INSTANCE + (
        " WHERE region = ? AND cluster = ? AND ec2_instance_id = ? AND status != 'INACTIVE'"
        " ORDER BY registered_at DESC"
    )
    row = fetch_one(conn, sql, (region, cluster, ec2_instance_id))
    return _instance(row) if row else None


def list_instances(
    conn: Connection,
    region: str,
    cluster: str,
    *,
    statuses: Sequence[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[Row]:
    """The cluster's instances ordered by ARN, after ``after``, at most ``limit`` (None: all)."""
    sql = _SELECT_INSTANCE + " WHERE region = ? AND cluster = ?"
    params: list[Any] = [region, cluster]
    if statuses is not None:
        sql += f" AND status IN ({placeholders(len(statuses))})"
        params += list(statuses)
    if after is not None:
        sql += " AND arn > ?"
        params.append(after)
    sql += " ORDER BY arn"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_instance(row) for row in fetch_all(conn, sql, params)]


def update_instance(conn: Connection, instance_id: str, **values: Any) -> None:
    """Write ``values`` (``body`` as a document) and bump the instance's ``version``."""
    if "body" in values:
        values["body"] = dumps(values["body"])
    c = container_instances.c
    conn.execute(
        update(container_instances).where(c.id == instance_id).values(version=c.version + 1, **values)
    )


def bump_generation(conn: Connection, instance_id: str) -> None:
    """The instance's desired state changed: a new generation, stamped on the tasks whose entries changed."""
    execute(conn, "UPDATE container_instances SET generation = generation + 1 WHERE id = ?", (instance_id,))
    _stamp_changed_tasks(conn, [instance_id])


# ---- desired-state deltas (agent API, control/agent.py) -------------------------------------------
#
# A task's ``desired_generation`` is the instance generation at which its desired-state entry last
# changed. A write that changes the entry sets it NULL (``update_task``, ``mark_eni_tasks_changed``; a new
# row starts NULL) and the bump of the instance's generation in the same transaction stamps it with the new
# generation. Stamping at the bump, rather than guessing "current + 1" at the write, keeps the stamp right
# when another transaction bumps the same instance between the write and the commit.


def _stamp_changed_tasks(conn: Connection, instance_ids: Sequence[str]) -> None:
    if not instance_ids:
        return
    execute(
        conn,
        "UPDATE tasks SET desired_generation = (SELECT generation FROM container_instances "
        "WHERE container_instances.id = tasks.container_instance_id) "
        f"WHERE container_instance_id IN ({placeholders(len(instance_ids))}) AND desired_generation IS NULL",
        list(instance_ids),
    )


def mark_eni_tasks_changed(conn: Connection, eni_ids: Sequence[str]) -> None:
    """The tasks holding these ENIs have a changed entry (their ENI's groups); a bump stamps them."""
    if eni_ids:
        conn.execute(update(tasks).where(tasks.c.eni_id.in_(list(eni_ids))).values(desired_generation=None))


# An instance's live tasks, written so the index (container_instance_id, last_status) bounds the search:
# `last_status != 'STOPPED'` cannot, and with the index on (container_instance_id, desired_generation)
# beside it SQLite's planner read every task the instance ever ran, stopped ones included, row by row (the
# server's memory and the time of each poll grew with the instance's history). Two ranges around 'STOPPED'
# are the same set and each is an index range; PostgreSQL reads them the same.
_LIVE_ON_INSTANCE = "container_instance_id = ? AND (last_status < 'STOPPED' OR last_status > 'STOPPED')"


def tasks_changed_since(conn: Connection, instance_id: str, since: int) -> tuple[list[Row], list[str]]:
    """(live tasks whose entry changed after generation ``since``, ARNs of tasks that left since then)."""
    live: list[Row] = []
    removed: list[str] = []
    rows = fetch_all(conn, _CHANGED_SINCE, (instance_id, instance_id, since))
    for task in (_task(row[:-1]) for row in rows):
        if task["last_status"] == "STOPPED":
            removed.append(task["arn"])
        else:
            live.append(task)
    return live, removed


def live_task_count(conn: Connection, instance_id: str) -> int:
    # one count per side of 'STOPPED': each is an index range (one count over both ORed ranges is not)
    one_side = "(SELECT COUNT(*) FROM tasks WHERE container_instance_id = ? AND last_status {} 'STOPPED')"
    row = fetch_one(
        conn, f"SELECT {one_side.format('<')} + {one_side.format('>')}", (instance_id, instance_id)
    )
    return int(row[0]) if row else 0


def set_heartbeat(conn: Connection, instance_id: str, now: float) -> None:
    """The agent polled or reported: it is connected. Connecting again is a change of the instance
    (``version`` + 1), as ECS counts a container instance state change event for it."""
    execute(
        conn,
        "UPDATE container_instances SET agent_heartbeat = ?, agent_connected = ?, "
        "version = version + CASE WHEN agent_connected THEN 0 ELSE 1 END "
        "WHERE id = ? AND status != 'INACTIVE'",
        (now, True, instance_id),
    )


def generation_of(conn: Connection, instance_id: str) -> tuple[int, str, str] | None:
    """(generation, status, region) of an instance: what a waiting long poll re-reads."""
    row = fetch_one(
        conn, "SELECT generation, status, region FROM container_instances WHERE id = ?", (instance_id,)
    )
    return (int(row[0]), str(row[1]), str(row[2])) if row else None


_USAGE = (
    "SELECT COALESCE(SUM(cpu), 0), COALESCE(SUM(memory), 0), "
    "COALESCE(SUM(CASE WHEN eni_id IS NOT NULL THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN last_status = 'RUNNING' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN last_status IN ('PROVISIONING', 'PENDING', 'ACTIVATING') THEN 1 ELSE 0 END), 0) "
    # each side of 'STOPPED' a range of ix_tasks_instance_usage (an OR of the two is not: SQLite then reads
    # every entry of the instance, stopped tasks included)
    "FROM (SELECT cpu, memory, eni_id, last_status FROM tasks "
    "WHERE container_instance_id = ? AND last_status < 'STOPPED' "
    "UNION ALL SELECT cpu, memory, eni_id, last_status FROM tasks "
    "WHERE container_instance_id = ? AND last_status > 'STOPPED') AS live"
)


def refresh_usage(conn: Connection, instance: Row) -> bool:
    """Recompute what the instance's live tasks use; write it (and bump version) if it changed."""
    row = fetch_one(conn, _USAGE, (instance["id"], instance["id"]))
    assert row is not None
    usage = {
        "cpu_used": int(row[0]),
        "memory_used": int(row[1]),
        "eni_used": int(row[2]),
        "running_count": int(row[3]),
        "pending_count": int(row[4]),
    }
    if all(instance[k] == v for k, v in usage.items()):
        return False
    update_instance(conn, instance["id"], **usage)
    instance.update(usage)
    instance["version"] += 1
    return True


USAGE_COLUMNS = ("cpu_used", "memory_used", "eni_used", "running_count", "pending_count")


_ADD_USAGE = (
    "UPDATE container_instances SET version = version + 1, "
    + ", ".join(f"{name} = {name} + ?" for name in USAGE_COLUMNS)
    + " WHERE id = ?"
)


def add_usage(conn: Connection, instance_id: str, delta: Sequence[int]) -> None:
    """Add ``delta`` (one value per :data:`USAGE_COLUMNS`) to the instance's usage (and bump its version):
    one task's change, without recounting every task of the instance as :func:`refresh_usage` does."""
    if len(delta) != len(USAGE_COLUMNS):
        raise ValueError("one value per usage column")
    execute(conn, _ADD_USAGE, (*(int(amount) for amount in delta), instance_id))


# ---- attributes -----------------------------------------------------------------------------------


def put_attributes(
    conn: Connection,
    instance: Row,
    items: Iterable[tuple[str, str | None]],
    *,
    custom: bool,
) -> None:
    a = container_instance_attributes.c
    for name, value in items:
        conn.execute(
            delete(container_instance_attributes).where(a.instance_id == instance["id"], a.name == name)
        )
        conn.execute(
            insert(container_instance_attributes).values(
                instance_id=instance["id"],
                name=name,
                region=instance["region"],
                cluster=instance["cluster"],
                value=value,
                custom=custom,
            )
        )


def delete_attributes(conn: Connection, instance_id: str, names: Iterable[str]) -> None:
    a = container_instance_attributes.c
    wanted = list(names)
    if wanted:
        conn.execute(
            delete(container_instance_attributes).where(a.instance_id == instance_id, a.name.in_(wanted))
        )


def delete_all_attributes(conn: Connection, instance_id: str, *, custom: bool | None = None) -> None:
    a = container_instance_attributes.c
    where = [a.instance_id == instance_id]
    if custom is not None:
        where.append(a.custom == custom)
    conn.execute(delete(container_instance_attributes).where(*where))


def attributes_of(
    conn: Connection, instance_ids: Sequence[str]
) -> dict[str, list[tuple[str, str | None, bool]]]:
    """(name, value, custom) per instance, in name order."""
    found: dict[str, list[tuple[str, str | None, bool]]] = {i: [] for i in instance_ids}
    if instance_ids:
        sql = (
            "SELECT instance_id, name, value, custom FROM container_instance_attributes "
            f"WHERE instance_id IN ({placeholders(len(instance_ids))}) ORDER BY instance_id, name"
        )
        for instance_id, name, value, custom in fetch_all(conn, sql, list(instance_ids)):
            found[instance_id].append((name, value, bool(custom)))
    return found


def list_attributes(
    conn: Connection, region: str, cluster: str, *, name: str | None, value: str | None
) -> list[tuple[str, str, str | None]]:
    """(instance ARN, name, value) of the cluster's registered instances, ordered by ARN then name."""
    sql = (
        "SELECT i.arn, a.name, a.value FROM container_instance_attributes a "
        "JOIN container_instances i ON i.id = a.instance_id "
        "WHERE a.region = ? AND a.cluster = ? AND i.status != 'INACTIVE'"
    )
    params: list[Any] = [region, cluster]
    if name is not None:
        sql += " AND a.name = ?"
        params.append(name)
    if value is not None:
        sql += " AND a.value = ?"
        params.append(value)
    return [(arn, n, v) for arn, n, v in fetch_all(conn, sql + " ORDER BY i.arn, a.name", params)]


# ---- tasks ----------------------------------------------------------------------------------------

_TASK_COLUMNS = (
    "id",
    "region",
    "cluster",
    "arn",
    "container_instance_id",
    "family",
    "task_group",
    "started_by",
    "desired_status",
    "last_status",
    "version",
    "cpu",
    "memory",
    "eni_id",
    "body",
    "spec",
)
_SELECT_TASK = f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks"

# Two index ranges rather than one OR (with which SQLite read every task row of the instance: 15 ms at 5,000)
_CHANGED_COLUMNS = f"{', '.join(_TASK_COLUMNS)}, created_at FROM tasks WHERE container_instance_id = ?"
_CHANGED_SINCE = (
    f"SELECT {_CHANGED_COLUMNS} AND desired_generation IS NULL "
    f"UNION ALL SELECT {_CHANGED_COLUMNS} AND desired_generation > ? ORDER BY created_at, arn"
)


def _task(row: Sequence[Any]) -> Row:
    out = dict(zip(_TASK_COLUMNS, row, strict=True))
    out["body"] = loads(out["body"])
    out["spec"] = loads(out["spec"])
    return out


def _stopped_at(body: dict[str, Any], now: float) -> float | None:
    if body["lastStatus"] != "STOPPED":
        return None
    return float(body.get("stoppedAt") or now)


def insert_task(conn: Connection, row: Row) -> None:
    stopped_at = _stopped_at(row["body"], row["updated_at"])
    values = {**row, "body": dumps(row["body"]), "spec": dumps(row["spec"]), "stopped_at": stopped_at}
    conn.execute(insert(tasks).values(**values))


def get_tasks(conn: Connection, region: str, cluster: str, task_ids: Iterable[str]) -> dict[str, Row]:
    wanted = list(dict.fromkeys(task_ids))
    if not wanted:
        return {}
    # By primary key only: with region and cluster in the WHERE clause SQLite's planner prefers a
    # (region, cluster, ...) index for a few ids and reads every task of the cluster (50 ms at 20,000).
    sql = _SELECT_TASK + f" WHERE id IN ({placeholders(len(wanted))})"
    rows = map(_task, fetch_all(conn, sql, wanted))
    return {r["id"]: r for r in rows if r["region"] == region and r["cluster"] == cluster}


def get_task(conn: Connection, task_id: str) -> Row | None:
    row = fetch_one(conn, _SELECT_TASK + " WHERE id = ?", (task_id,))
    return _task(row) if row else None


def get_tasks_by_arn(conn: Connection, arns: Sequence[str]) -> list[Row]:
    if not arns:
        return []
    sql = _SELECT_TASK + f" WHERE arn IN ({placeholders(len(arns))})"
    by_arn = {r["arn"]: r for r in map(_task, fetch_all(conn, sql, list(arns)))}
    return [by_arn[arn] for arn in arns if arn in by_arn]


def tasks_on_instance(conn: Connection, instance_id: str, *, live_only: bool = True) -> list[Row]:
    sql = _SELECT_TASK + " WHERE " + (_LIVE_ON_INSTANCE if live_only else "container_instance_id = ?")
    return [_task(row) for row in fetch_all(conn, sql + " ORDER BY created_at, arn", (instance_id,))]


# What the agent's entry shows changed (desired status) or the task left its list (STOPPED now): NULL,
# stamped by the generation bump of the same transaction (see _stamp_changed_tasks). The right-hand
# columns are the row's values before the update, in SQLite and PostgreSQL alike.
_UPDATE_TASK = (
    "UPDATE tasks SET desired_status = ?, last_status = ?, version = ?, eni_id = ?, "
    "desired_generation = CASE WHEN desired_status != ?{left} THEN NULL ELSE desired_generation END, "
    "updated_at = ?, stopped_at = ?, body = ? WHERE id = ?"
)
_UPDATE_LIVE_TASK = _UPDATE_TASK.format(left="")
_UPDATE_STOPPED_TASK = _UPDATE_TASK.format(left=" OR last_status != 'STOPPED'")


def update_task(conn: Connection, task: Row, now: float) -> None:
    """Write the task's document and the columns derived from it (statuses, version, ENI).

    Plain SQL: a stop and its report write one task each, and the Core statement's build cost about
    three times the write (``rawsql``)."""
    body = task["body"]
    sql = _UPDATE_STOPPED_TASK if body["lastStatus"] == "STOPPED" else _UPDATE_LIVE_TASK
    execute(
        conn,
        sql,
        (
            body["desiredStatus"],
            body["lastStatus"],
            body["version"],
            task["eni_id"],
            body["desiredStatus"],
            now,
            _stopped_at(body, now),
            dumps(body),
            task["id"],
        ),
    )


def list_task_arns(
    conn: Connection,
    region: str,
    cluster: str,
    *,
    desired_status: str,
    instance_id: str | None,
    family: str | None,
    started_by: str | None,
    after: str | None,
    limit: int,
    service_name: str | None = None,
    launch_type: str | None = None,
) -> list[str]:
    sql = "SELECT arn FROM tasks WHERE region = ? AND cluster = ? AND desired_status = ?"
    params: list[Any] = [region, cluster, desired_status]
    for column, value in (
        ("container_instance_id", instance_id),
        ("family", family),
        ("started_by", started_by),
        ("service_name", service_name),
        ("launch_type", launch_type),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if after is not None:
        sql += " AND arn > ?"
        params.append(after)
    return [arn for (arn,) in fetch_all(conn, sql + " ORDER BY arn LIMIT ?", [*params, limit])]


def group_counts(conn: Connection, region: str, cluster: str) -> dict[str, dict[str, int]]:
    """Per instance: how many tasks of each group it holds with desired status RUNNING."""
    sql = (
        "SELECT container_instance_id, task_group, COUNT(*) FROM tasks "
        "WHERE region = ? AND cluster = ? AND desired_status = 'RUNNING' AND last_status != 'STOPPED' "
        "GROUP BY container_instance_id, task_group"
    )
    counts: dict[str, dict[str, int]] = {}
    for instance_id, group, count in fetch_all(conn, sql, (region, cluster)):
        counts.setdefault(instance_id, {})[group] = int(count)
    return counts


# ---- idempotency tokens ---------------------------------------------------------------------------


def get_token(conn: Connection, region: str, operation: str, token: str) -> tuple[str, dict[str, Any]] | None:
    sql = "SELECT request_hash, response FROM idempotency WHERE region = ? AND operation = ? AND token = ?"
    row = fetch_one(conn, sql, (region, operation, token))
    return (str(row[0]), loads(row[1])) if row else None


def put_token(
    conn: Connection,
    region: str,
    operation: str,
    token: str,
    request_hash: str,
    response: dict[str, Any],
    now: float,
) -> None:
    conn.execute(
        insert(idempotency).values(
            region=region,
            operation=operation,
            token=token,
            request_hash=request_hash,
            response=dumps(response),
            created_at=now,
        )
    )


def purge_tokens(conn: Connection, operation: str, older_than: float) -> None:
    i = idempotency.c
    conn.execute(delete(idempotency).where(i.operation == operation, i.created_at < older_than))


def bump_region_generations(conn: Connection, region: str) -> list[str]:
    """Bump every live instance of the region (a security group changed); their ids, to wake their polls."""
    c = container_instances.c
    rows = fetch_all(
        conn, "SELECT id FROM container_instances WHERE region = ? AND status != 'INACTIVE'", (region,)
    )
    instance_ids = [str(row[0]) for row in rows]
    if instance_ids:
        conn.execute(
            update(container_instances).where(c.id.in_(instance_ids)).values(generation=c.generation + 1)
        )
        _stamp_changed_tasks(conn, instance_ids)
    return instance_ids
