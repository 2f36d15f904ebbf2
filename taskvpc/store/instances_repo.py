"""EC2 instances: rows of ``ec2_instances``, each the instance's wire document plus its state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from taskvpc.store.ecs_repo import dumps, loads
from taskvpc.store.schema import ec2_instances

Doc = dict[str, Any]


def insert_instance(conn: Connection, region: str, doc: Doc, client_token: str | None, now: float) -> None:
    conn.execute(
        insert(ec2_instances).values(
            id=doc["InstanceId"],
            region=region,
            state=doc["State"]["Name"],
            client_token=client_token,
            created_at=now,
            body=dumps(doc),
        )
    )


def update_instance(conn: Connection, doc: Doc) -> None:
    conn.execute(
        update(ec2_instances)
        .where(ec2_instances.c.id == doc["InstanceId"])
        .values(state=doc["State"]["Name"], body=dumps(doc))
    )


def list_instances(conn: Connection, region: str | None, ids: list[str] | None = None) -> list[Doc]:
    query = select(ec2_instances.c.body)
    if region is not None:
        query = query.where(ec2_instances.c.region == region)
    if ids is not None:
        query = query.where(ec2_instances.c.id.in_(ids))
    return [loads(row.body) for row in conn.execute(query.order_by(ec2_instances.c.id))]


def by_client_token(conn: Connection, region: str, token: str) -> list[Doc]:
    query = select(ec2_instances.c.body).where(
        ec2_instances.c.region == region, ec2_instances.c.client_token == token
    )
    return [loads(row.body) for row in conn.execute(query.order_by(ec2_instances.c.id))]


def lock_instances(conn: Connection, region: str, ids: list[str]) -> list[Doc]:
    """The named instances, locked for update where the backend can (PostgreSQL)."""
    query = (
        select(ec2_instances.c.body)
        .where(ec2_instances.c.region == region, ec2_instances.c.id.in_(ids))
        .with_for_update()
    )
    return [loads(row.body) for row in conn.execute(query.order_by(ec2_instances.c.id))]


def regions_with_instances(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute(select(ec2_instances.c.region).distinct())]
