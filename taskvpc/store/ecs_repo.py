"""Reads and writes of ECS resources. Plain functions over a Connection; no ECS rules live here."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskvpc.store.rawsql import execute, fetch_all, fetch_one, placeholders
from taskvpc.store.schema import account_settings, clusters, tags, task_definitions


def dumps(document: dict[str, Any]) -> str:
    return orjson.dumps(document).decode()


def loads(text: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


# ---- clusters -------------------------------------------------------------------------------------


# Hot reads run as plain SQL (see rawsql: a Core statement costs ~9x more than the query itself).
_GET_CLUSTER = "SELECT body FROM clusters WHERE region = ? AND name = ?"
_GET_TASK_DEFINITION = "SELECT body FROM task_definitions WHERE region = ? AND family = ? AND revision = ?"
_LATEST_ACTIVE_TASK_DEFINITION = (
    "SELECT body FROM task_definitions WHERE region = ? AND family = ? AND status = 'ACTIVE' "
    "ORDER BY revision DESC LIMIT 1"
)
_GET_TAGS = "SELECT key, value FROM tags WHERE resource_arn = ? ORDER BY key"


def get_cluster(conn: Connection, region: str, name: str) -> dict[str, Any] | None:
    row = fetch_one(conn, _GET_CLUSTER, (region, name))
    return loads(row[0]) if row else None


def get_clusters(conn: Connection, region: str, names: list[str]) -> dict[str, dict[str, Any]]:
    sql = f"SELECT name, body FROM clusters WHERE region = ? AND name IN ({placeholders(len(names))})"
    return {name: loads(body) for name, body in fetch_all(conn, sql, (region, *names))}


def put_cluster(conn: Connection, region: str, cluster: dict[str, Any], created_at: float) -> None:
    name = cluster["clusterName"]
    values = {"arn": cluster["clusterArn"], "status": cluster["status"], "body": dumps(cluster)}
    updated = execute(  # plain SQL: a stop and a report write the cluster's counters (``rawsql``)
        conn,
        "UPDATE clusters SET arn = ?, status = ?, body = ? WHERE region = ? AND name = ?",
        (values["arn"], values["status"], values["body"], region, name),
    )
    if updated == 0:
        conn.execute(insert(clusters).values(region=region, name=name, created_at=created_at, **values))


def list_cluster_arns(conn: Connection, region: str, after: str | None, limit: int) -> list[str]:
    sql = "SELECT arn FROM clusters WHERE region = ? AND status = 'ACTIVE'"
    params: list[Any] = [region]
    if after is not None:
        sql += " AND arn > ?"
        params.append(after)
    return [arn for (arn,) in fetch_all(conn, sql + " ORDER BY arn LIMIT ?", [*params, limit])]


# ---- task definitions -----------------------------------------------------------------------------


def next_revision(conn: Connection, region: str, family: str) -> int:
    current = conn.execute(
        select(func.max(task_definitions.c.revision)).where(
            task_definitions.c.region == region, task_definitions.c.family == family
        )
    ).scalar()
    return int(current or 0) + 1


def insert_task_definition(conn: Connection, region: str, body: dict[str, Any]) -> bool:
    """False when the revision was taken meanwhile (another writer); the caller retries."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(task_definitions).values(
                    region=region,
                    family=body["family"],
                    revision=body["revision"],
                    arn=body["taskDefinitionArn"],
                    status=body["status"],
                    registered_at=body["registeredAt"],
                    body=dumps(body),
                )
            )
    except IntegrityError:
        return False
    return True


def get_task_definition(conn: Connection, region: str, family: str, revision: int) -> dict[str, Any] | None:
    row = fetch_one(conn, _GET_TASK_DEFINITION, (region, family, revision))
    return loads(row[0]) if row else None


def latest_active_task_definition(conn: Connection, region: str, family: str) -> dict[str, Any] | None:
    row = fetch_one(conn, _LATEST_ACTIVE_TASK_DEFINITION, (region, family))
    return loads(row[0]) if row else None


def update_task_definition(conn: Connection, region: str, body: dict[str, Any]) -> None:
    conn.execute(
        update(task_definitions)
        .where(
            task_definitions.c.region == region,
            task_definitions.c.family == body["family"],
            task_definitions.c.revision == body["revision"],
        )
        .values(status=body["status"], body=dumps(body))
    )


@cache
def _task_definition_keys_sql(by_family: bool, descending: bool, paged: bool) -> str:
    sql = "SELECT family, revision, arn FROM task_definitions WHERE region = ? AND status = ?"
    if by_family:
        sql += " AND family = ?"
    if paged:
        op = "<" if descending else ">"
        sql += f" AND (family {op} ? OR (family = ? AND revision {op} ?))"
    order = "DESC" if descending else "ASC"
    return sql + f" ORDER BY family {order}, revision {order} LIMIT ?"


def list_task_definition_keys(
    conn: Connection,
    region: str,
    *,
    family: str | None,
    status: str,
    descending: bool,
    after: tuple[str, int] | None,
    limit: int,
) -> list[tuple[str, int, str]]:
    """(family, revision, arn) in (family, revision) order, starting after the key ``after``."""
    sql = _task_definition_keys_sql(family is not None, descending, after is not None)
    params: list[Any] = [region, status]
    if family is not None:
        params.append(family)
    if after is not None:
        params += [after[0], after[0], after[1]]
    params.append(limit)
    return [(f, int(r), arn) for f, r, arn in fetch_all(conn, sql, params)]


def list_families(
    conn: Connection, region: str, *, prefix: str | None, status: str, after: str | None, limit: int
) -> list[str]:
    """Family names, sorted. ACTIVE: has an ACTIVE revision; INACTIVE: has none; ALL: either."""
    td = task_definitions.c
    active = func.sum(func.cast(td.status == "ACTIVE", task_definitions.c.revision.type))
    if status == "ACTIVE":
        # The families with an ACTIVE revision, distinct along the (region, status, family) index: a page
        # reads its own families, not every revision of the region.
        query = select(td.family).distinct().where(td.region == region, td.status == "ACTIVE")
        if prefix:
            query = query.where(td.family.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(td.family > after)
        return list(conn.execute(query.order_by(td.family).limit(limit)).scalars())
    query = select(td.family).where(td.region == region, td.status != "DELETE_IN_PROGRESS")
    if prefix:
        query = query.where(td.family.startswith(prefix, autoescape=True))
    if after is not None:
        query = query.where(td.family > after)
    query = query.group_by(td.family)
    if status == "INACTIVE":
        query = query.having(active == 0)
    return list(conn.execute(query.order_by(td.family).limit(limit)).scalars())


# ---- tags -----------------------------------------------------------------------------------------


def get_tags(conn: Connection, resource_arn: str) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in fetch_all(conn, _GET_TAGS, (resource_arn,))]


def put_tags(conn: Connection, region: str, resource_arn: str, new_tags: list[dict[str, str]]) -> None:
    keys = [tag["key"] for tag in new_tags]
    if keys:
        conn.execute(delete(tags).where(tags.c.resource_arn == resource_arn, tags.c.key.in_(keys)))
        conn.execute(
            insert(tags),
            [
                {"region": region, "resource_arn": resource_arn, "key": t["key"], "value": t.get("value", "")}
                for t in new_tags
            ],
        )


def remove_tags(conn: Connection, resource_arn: str, keys: list[str]) -> None:
    conn.execute(delete(tags).where(tags.c.resource_arn == resource_arn, tags.c.key.in_(keys)))


def count_tags(conn: Connection, resource_arn: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(tags).where(tags.c.resource_arn == resource_arn)
        ).scalar()
        or 0
    )


# ---- account settings -----------------------------------------------------------------------------


def get_settings(conn: Connection, region: str) -> list[tuple[str, str, str]]:
    """Every stored (principal_arn, name, value) of the region."""
    rows = conn.execute(
        select(account_settings.c.principal_arn, account_settings.c.name, account_settings.c.value).where(
            account_settings.c.region == region
        )
    )
    return [(row.principal_arn, row.name, row.value) for row in rows]


def put_setting(conn: Connection, region: str, principal_arn: str, name: str, value: str) -> None:
    s = account_settings.c
    where = (s.region == region, s.principal_arn == principal_arn, s.name == name)
    if conn.execute(update(account_settings).where(*where).values(value=value)).rowcount == 0:
        conn.execute(
            insert(account_settings).values(
                region=region, principal_arn=principal_arn, name=name, value=value
            )
        )


def delete_setting(conn: Connection, region: str, principal_arn: str, name: str) -> bool:
    s = account_settings.c
    result = conn.execute(
        delete(account_settings).where(s.region == region, s.principal_arn == principal_arn, s.name == name)
    )
    return bool(result.rowcount)
