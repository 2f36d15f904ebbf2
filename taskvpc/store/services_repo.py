"""Reads and writes of ECS services, their deployments and events, and capacity providers.

Plain functions over a Connection, no ECS rules. A service's tasks are the rows of ``tasks`` whose
``started_by`` is one of its deployments' ids (ECS writes the deployment id there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, update

from taskvpc.store.ecs_repo import dumps, loads
from taskvpc.store.rawsql import fetch_all, fetch_one, placeholders
from taskvpc.store.schema import capacity_providers, service_deployments, service_events, services

Row = dict[str, Any]

_CHUNK = 500  # ids per IN list (SQLite allows 32,766 parameters; keeps statements small)
_SERVICE_COLUMNS = ("id", "region", "cluster", "name", "arn", "status", "created_at", "updated_at", "body")
_SELECT_SERVICE = f"SELECT {', '.join(_SERVICE_COLUMNS)} FROM services"


def _service(row: Sequence[Any]) -> Row:
    out = dict(zip(_SERVICE_COLUMNS, row, strict=True))
    out["body"] = loads(out["body"])
    return out


# ---- services ---------------------------------------------------------------------------------------


def insert_service(conn: Connection, row: Row) -> None:
    conn.execute(insert(services).values(**{**row, "body": dumps(row["body"])}))


def save_service(conn: Connection, row: Row, now: float) -> None:
    conn.execute(
        update(services)
        .where(services.c.id == row["id"])
        .values(status=row["body"]["status"], updated_at=now, body=dumps(row["body"]))
    )
    row["status"] = row["body"]["status"]


def find_service(conn: Connection, region: str, cluster: str, name: str) -> Row | None:
    """The cluster's service of that name that is not INACTIVE, else the newest INACTIVE one."""
    sql = _SELECT_SERVICE + (
        " WHERE region = ? AND cluster = ? AND name = ?"
        " ORDER BY CASE WHEN status = 'INACTIVE' THEN 1 ELSE 0 END, created_at DESC LIMIT 1"
    )
    row = fetch_one(conn, sql, (region, cluster, name))
    return _service(row) if row else None


def get_service(conn: Connection, service_id: str) -> Row | None:
    row = fetch_one(conn, _SELECT_SERVICE + " WHERE id = ?", (service_id,))
    return _service(row) if row else None


def get_services(conn: Connection, service_ids: Sequence[str]) -> list[Row]:
    found: list[Row] = []
    for start in range(0, len(service_ids), _CHUNK):
        chunk = service_ids[start : start + _CHUNK]
        sql = _SELECT_SERVICE + f" WHERE id IN ({placeholders(len(chunk))})"
        found += map(_service, fetch_all(conn, sql, chunk))
    return found


def lock_service(conn: Connection, service_id: str) -> None:
    """Serialise reconcilers of one service on PostgreSQL (SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        fetch_one(conn, "SELECT id FROM services WHERE id = ? FOR UPDATE", (service_id,))


def list_service_arns(
    conn: Connection,
    region: str,
    cluster: str,
    *,
    launch_type: str | None,
    scheduling_strategy: str | None,
    after: str | None,
    limit: int,
) -> list[str]:
    sql = "SELECT arn, body FROM services WHERE region = ? AND cluster = ? AND status != 'INACTIVE'"
    params: list[Any] = [region, cluster]
    if after is not None:
        sql += " AND arn > ?"
        params.append(after)
    found: list[str] = []
    for arn, body in fetch_all(conn, sql + " ORDER BY arn", params):
        if launch_type is not None or scheduling_strategy is not None:
            doc = loads(body)
            if launch_type is not None and doc.get("launchType") != launch_type:
                continue
            if scheduling_strategy is not None and doc.get("schedulingStrategy") != scheduling_strategy:
                continue
        found.append(str(arn))
        if len(found) >= limit:
            break
    return found


def live_service_keys(conn: Connection) -> list[tuple[str, str]]:
    """(region, id) of every service a reconciler still has work on (ACTIVE or DRAINING)."""
    rows = fetch_all(conn, "SELECT region, id FROM services WHERE status != 'INACTIVE' ORDER BY id", ())
    return [(str(row[0]), str(row[1])) for row in rows]


def count_active(conn: Connection, region: str, cluster: str) -> int:
    sql = "SELECT COUNT(*) FROM services WHERE region = ? AND cluster = ? AND status = 'ACTIVE'"
    row = fetch_one(conn, sql, (region, cluster))
    return int(row[0]) if row else 0


# ---- deployments ------------------------------------------------------------------------------------


def insert_deployment(conn: Connection, service: Row, body: Row, now: float) -> None:
    conn.execute(
        insert(service_deployments).values(
            id=body["id"],
            service_id=service["id"],
            region=service["region"],
            status=body["status"],
            created_at=now,
            body=dumps(body),
        )
    )


def save_deployment(conn: Connection, body: Row) -> None:
    conn.execute(
        update(service_deployments)
        .where(service_deployments.c.id == body["id"])
        .values(status=body["status"], body=dumps(body))
    )


def deployments_of(conn: Connection, service_id: str) -> list[Row]:
    """The service's deployments that are not retired, newest first (the order ECS shows them in)."""
    sql = (
        "SELECT body FROM service_deployments WHERE service_id = ? AND status != 'INACTIVE' "
        "ORDER BY created_at DESC, id DESC"
    )
    return [loads(row[0]) for row in fetch_all(conn, sql, (service_id,))]


def deployments_of_services(conn: Connection, service_ids: Sequence[str]) -> dict[str, list[Row]]:
    """deployments_of for many services at once."""
    found: dict[str, list[Row]] = {}
    for start in range(0, len(service_ids), _CHUNK):
        chunk = service_ids[start : start + _CHUNK]
        sql = (
            "SELECT service_id, body FROM service_deployments "
            f"WHERE service_id IN ({placeholders(len(chunk))}) AND status != 'INACTIVE' "
            "ORDER BY created_at DESC, id DESC"
        )
        for service_id, body in fetch_all(conn, sql, chunk):
            found.setdefault(str(service_id), []).append(loads(body))
    return found


def deployment_ids_of(conn: Connection, service_id: str) -> list[str]:
    rows = fetch_all(conn, "SELECT id FROM service_deployments WHERE service_id = ?", (service_id,))
    return [str(row[0]) for row in rows]


# ---- the service's tasks ----------------------------------------------------------------------------


def tasks_of(
    conn: Connection, region: str, cluster: str, deployment_ids: Sequence[str], *, stopped_since: float | None
) -> list[tuple[str, str, str, str, float, Row]]:
    """(arn, started_by, last_status, desired_status, updated_at, body) of the deployments' tasks that
    are not STOPPED, and of those that stopped at or after ``stopped_since`` (None: ever)."""
    found: list[tuple[str, str, str, str, float, Row]] = []
    for start in range(0, len(deployment_ids), _CHUNK):
        chunk = deployment_ids[start : start + _CHUNK]
        sql = (
            "SELECT arn, started_by, last_status, desired_status, updated_at, body FROM tasks "
            f"WHERE region = ? AND cluster = ? AND started_by IN ({placeholders(len(chunk))})"
        )
        params: list[Any] = [region, cluster, *chunk]
        if stopped_since is not None:
            sql += " AND (last_status != 'STOPPED' OR updated_at >= ?)"
            params.append(stopped_since)
        found += [
            (str(arn), str(by), str(last), str(desired), float(at), loads(body))
            for arn, by, last, desired, at, body in fetch_all(conn, sql + " ORDER BY created_at, arn", params)
        ]
    return found


# ---- events -----------------------------------------------------------------------------------------


def add_event(conn: Connection, service_id: str, event_id: str, now: float, message: str, keep: int) -> None:
    conn.execute(
        insert(service_events).values(service_id=service_id, id=event_id, created_at=now, message=message)
    )
    oldest_kept = fetch_one(
        conn,
        "SELECT seq FROM service_events WHERE service_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (service_id, keep - 1),
    )
    if oldest_kept is not None:
        e = service_events.c
        conn.execute(delete(service_events).where(e.service_id == service_id, e.seq < oldest_kept[0]))


def events_of(conn: Connection, service_id: str, limit: int) -> list[Row]:
    """Newest first, as DescribeServices shows them."""
    sql = "SELECT id, created_at, message FROM service_events WHERE service_id = ? ORDER BY seq DESC LIMIT ?"
    return [
        {"id": str(i), "createdAt": float(at), "message": str(m)}
        for i, at, m in fetch_all(conn, sql, (service_id, limit))
    ]


# ---- capacity providers -----------------------------------------------------------------------------


def get_capacity_provider(conn: Connection, region: str, name: str) -> Row | None:
    row = fetch_one(conn, "SELECT body FROM capacity_providers WHERE region = ? AND name = ?", (region, name))
    return loads(row[0]) if row else None


def put_capacity_provider(conn: Connection, region: str, body: Row, now: float) -> None:
    values = {"arn": body["capacityProviderArn"], "status": body["status"], "body": dumps(body)}
    c = capacity_providers.c
    updated = conn.execute(
        update(capacity_providers).where(c.region == region, c.name == body["name"]).values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(
            insert(capacity_providers).values(region=region, name=body["name"], created_at=now, **values)
        )


def delete_capacity_provider(conn: Connection, region: str, name: str) -> None:
    c = capacity_providers.c
    conn.execute(delete(capacity_providers).where(c.region == region, c.name == name))


def list_capacity_providers(conn: Connection, region: str) -> list[Row]:
    sql = "SELECT body FROM capacity_providers WHERE region = ? ORDER BY name"
    return [loads(row[0]) for row in fetch_all(conn, sql, (region,))]


def active_clusters(conn: Connection, region: str) -> list[Row]:
    rows = fetch_all(conn, "SELECT body FROM clusters WHERE region = ? AND status = 'ACTIVE'", (region,))
    return [loads(row[0]) for row in rows]
