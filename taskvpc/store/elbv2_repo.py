"""Reads and writes of ELBv2 resources. Plain functions over a Connection; no ELB rules live here.

Load balancers, target groups, listeners and rules are wire documents keyed by ARN (``kind`` names the
table); registered targets are rows whose health columns the data plane's reports update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Table, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from taskvpc.store.schema import (
    container_instances,
    elb_listeners,
    elb_load_balancers,
    elb_rules,
    elb_tags,
    elb_target_groups,
    elb_targets,
)

Doc = dict[str, Any]

TABLES: dict[str, Table] = {
    "load_balancer": elb_load_balancers,
    "target_group": elb_target_groups,
    "listener": elb_listeners,
    "rule": elb_rules,
}


def _loads(text: str) -> Doc:
    value: Doc = orjson.loads(text)
    return value


def insert_doc(
    conn: Connection, kind: str, region: str, arn: str, body: Doc, now: float, **columns: Any
) -> bool:
    """False when a unique column (name, port, priority) is taken: the caller answers the duplicate."""
    table = TABLES[kind]
    values = {"arn": arn, "region": region, "created_at": now, "body": orjson.dumps(body).decode(), **columns}
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def update_doc(conn: Connection, kind: str, arn: str, body: Doc, **columns: Any) -> bool:
    table = TABLES[kind]
    values = {"body": orjson.dumps(body).decode(), **columns}
    try:
        with conn.begin_nested():
            conn.execute(update(table).where(table.c.arn == arn).values(**values))
    except IntegrityError:
        return False
    return True


def get_doc(conn: Connection, kind: str, region: str, arn: str) -> Doc | None:
    table = TABLES[kind]
    row = conn.execute(select(table.c.body).where(table.c.arn == arn, table.c.region == region)).first()
    return _loads(row[0]) if row else None


def list_docs(conn: Connection, kind: str, region: str, **where: Any) -> list[Doc]:
    """Documents of a kind in creation order; ``where`` filters columns (a list value means IN)."""
    table = TABLES[kind]
    conditions = [table.c.region == region]
    for column, value in where.items():
        if isinstance(value, list | tuple | set):
            conditions.append(table.c[column].in_(list(value)))
        else:
            conditions.append(table.c[column] == value)
    query = select(table.c.body).where(and_(*conditions)).order_by(table.c.created_at, table.c.arn)
    return [_loads(body) for (body,) in conn.execute(query)]


def list_rules(conn: Connection, listener_arns: Iterable[str]) -> list[Doc]:
    query = (
        select(elb_rules.c.body)
        .where(elb_rules.c.listener_arn.in_(list(listener_arns)))
        .order_by(elb_rules.c.listener_arn, elb_rules.c.priority)
    )
    return [_loads(body) for (body,) in conn.execute(query)]


def delete_doc(conn: Connection, kind: str, arn: str) -> None:
    table = TABLES[kind]
    conn.execute(delete(table).where(table.c.arn == arn))
    conn.execute(delete(elb_tags).where(elb_tags.c.resource_arn == arn))


# ---- targets ----------------------------------------------------------------------------------------


def targets_of(conn: Connection, target_group_arns: Iterable[str]) -> list[Doc]:
    query = (
        select(elb_targets)
        .where(elb_targets.c.target_group_arn.in_(list(target_group_arns)))
        .order_by(elb_targets.c.registered_at, elb_targets.c.target_id, elb_targets.c.port)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def put_target(conn: Connection, region: str, target: Doc) -> None:
    """Register (or re-register, which ends a drain) one target."""
    key = (
        elb_targets.c.target_group_arn == target["target_group_arn"],
        elb_targets.c.target_id == target["target_id"],
        elb_targets.c.port == target["port"],
    )
    conn.execute(delete(elb_targets).where(*key))
    conn.execute(insert(elb_targets).values(region=region, **target))


def set_target_state(
    conn: Connection,
    target_group_arn: str,
    target_id: str,
    port: int,
    **values: Any,
) -> bool:
    result = conn.execute(
        update(elb_targets)
        .where(
            elb_targets.c.target_group_arn == target_group_arn,
            elb_targets.c.target_id == target_id,
            elb_targets.c.port == port,
        )
        .values(**values)
    )
    return bool(result.rowcount)


def remove_targets_drained(conn: Connection, target_group_arn: str, now: float) -> None:
    """Forget targets whose deregistration delay has passed (they show as gone from then on)."""
    conn.execute(
        delete(elb_targets).where(
            elb_targets.c.target_group_arn == target_group_arn,
            elb_targets.c.drain_until.is_not(None),
            elb_targets.c.drain_until <= now,
        )
    )


def remove_all_targets(conn: Connection, target_group_arn: str) -> None:
    conn.execute(delete(elb_targets).where(elb_targets.c.target_group_arn == target_group_arn))


# ---- tags -------------------------------------------------------------------------------------------


def tags_of(conn: Connection, arns: list[str]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {arn: [] for arn in arns}
    query = select(elb_tags).where(elb_tags.c.resource_arn.in_(arns)).order_by(elb_tags.c.key)
    for row in conn.execute(query):
        found[row.resource_arn].append({"Key": row.key, "Value": row.value})
    return found


def put_tags(conn: Connection, region: str, arn: str, tags: list[dict[str, str]]) -> None:
    for tag in tags:
        conn.execute(delete(elb_tags).where(elb_tags.c.resource_arn == arn, elb_tags.c.key == tag["Key"]))
        conn.execute(
            insert(elb_tags).values(
                resource_arn=arn, key=tag["Key"], region=region, value=tag.get("Value", "")
            )
        )


def remove_tags(conn: Connection, arn: str, keys: list[str]) -> None:
    conn.execute(delete(elb_tags).where(elb_tags.c.resource_arn == arn, elb_tags.c.key.in_(keys)))


def live_instances(conn: Connection, region: str) -> list[Doc]:
    """The region's ACTIVE container instances (id, vpc_id, agent_connected) by ARN: who may run an LB."""
    c = container_instances.c
    query = (
        select(c.id, c.vpc_id, c.agent_connected)
        .where(c.region == region, c.status == "ACTIVE")
        .order_by(c.arn)
    )
    return [
        {"id": row.id, "vpc_id": row.vpc_id, "agent_connected": bool(row.agent_connected)}
        for row in conn.execute(query)
    ]
