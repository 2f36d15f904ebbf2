"""EC2 flow log rows: the DescribeFlowLogs document beside the resource it watches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from taskvpc.store.schema import flow_logs

Doc = dict[str, Any]


def insert_flow_log(conn: Connection, region: str, doc: Doc, now: float) -> None:
    values = {
        "id": doc["FlowLogId"],
        "region": region,
        "resource_id": doc["ResourceId"],
        "created_at": now,
        "body": json.dumps(doc),
    }
    conn.execute(insert(flow_logs).values(**values))


def list_flow_logs(conn: Connection, region: str, resource_ids: Iterable[str] | None = None) -> list[Doc]:
    f = flow_logs.c
    query = select(f.body).where(f.region == region).order_by(f.id)
    if resource_ids is not None:
        query = query.where(f.resource_id.in_(list(resource_ids)))
    return [json.loads(body) for body in conn.execute(query).scalars()]


def resource_ids(conn: Connection, region: str) -> set[str]:
    """The resources the region's flow logs watch."""
    f = flow_logs.c
    return set(conn.execute(select(f.resource_id).where(f.region == region).distinct()).scalars())


def delete_flow_log(conn: Connection, region: str, flow_log_id: str) -> bool:
    f = flow_logs.c
    return bool(conn.execute(delete(flow_logs).where(f.region == region, f.id == flow_log_id)).rowcount)
