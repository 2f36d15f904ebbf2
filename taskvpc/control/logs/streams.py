"""Log streams: CreateLogStream, DeleteLogStream, DescribeLogStreams."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from taskvpc.control.context import RequestContext
from taskvpc.control.logs.common import (
    LOGS_PAGING,
    already_exists,
    group_name_of,
    now_ms,
    require_group,
    require_stream,
    stream_arn,
)
from taskvpc.domain.logs_events import invalid_parameter
from taskvpc.domain.pagination import Pager
from taskvpc.store import logs_repo

DESCRIBE_LIMIT = 50
STREAM_EXISTS = "The specified log stream already exists"


def create_log_stream(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    try:
        with ctx.db.transaction() as conn:
            group = require_group(conn, ctx, params["logGroupName"])
            if logs_repo.get_stream(conn, group["id"], params["logStreamName"]) is not None:
                raise already_exists(STREAM_EXISTS)
            logs_repo.insert_stream(conn, group["id"], params["logStreamName"], now_ms(ctx))
    except IntegrityError:  # a concurrent create of the same stream won the race
        raise already_exists(STREAM_EXISTS) from None
    return {}


def delete_log_stream(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, params["logGroupName"])
        stream = require_stream(conn, group, params["logStreamName"])
        logs_repo.delete_stream(conn, stream["id"])
    return {}


def describe_log_streams(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = group_name_of(params)
    assert name is not None
    by_last_event = params.get("orderBy", "LogStreamName") == "LastEventTime"
    prefix = params.get("logStreamNamePrefix")
    if by_last_event and prefix is not None:
        raise invalid_parameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
    pager = Pager.of(ctx.page_key, "logs:DescribeLogStreams", ctx.region, ctx.account_id, params, LOGS_PAGING)
    token = params.get("nextToken")
    bad_token = invalid_parameter("The specified nextToken is invalid.")
    after = pager.decode(token, bad_token)
    if after is not None and not (isinstance(after, list) and len(after) == (2 if by_last_event else 1)):
        raise bad_token
    limit = params.get("limit", DESCRIBE_LIMIT)
    with ctx.db.read() as conn:
        group = require_group(conn, ctx, name)
        rows = logs_repo.list_streams(
            conn,
            group["id"],
            prefix=prefix,
            by_last_event=by_last_event,
            descending=bool(params.get("descending")),
            after=after,
            limit=limit + 1,
        )
    page = rows[:limit]
    result: dict[str, Any] = {"logStreams": [_stream_document(ctx, name, r) for r in page]}
    if len(rows) > limit:
        last = page[-1]
        key = [last["last_event_at"] if last["last_event_at"] is not None else -1, last["id"]]
        result["nextToken"] = pager.encode(key if by_last_event else [last["name"]])
    return result


def _stream_document(ctx: RequestContext, group: str, row: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "logStreamName": row["name"],
        "creationTime": row["created_at"],
        "arn": stream_arn(ctx, group, row["name"]),
        "storedBytes": row["stored_bytes"],
        # Sequence tokens are ignored by PutLogEvents; clients that still read one get a stable value.
        "uploadSequenceToken": "1",
    }
    for column, member in (
        ("first_event_at", "firstEventTimestamp"),
        ("last_event_at", "lastEventTimestamp"),
        ("last_ingestion_at", "lastIngestionTime"),
    ):
        if row[column] is not None:
            doc[member] = row[column]
    return doc
