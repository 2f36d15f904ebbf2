"""Log events: PutLogEvents, GetLogEvents, FilterLogEvents.

GetLogEvents pages a stream by position, AWS-style: ``nextForwardToken`` (``f/...``) resumes after the
page's newest event, ``nextBackwardToken`` (``b/...``) before its oldest, and a page with nothing new
hands the same token back (how clients know they reached the end). FilterLogEvents reads a group in
(timestamp, insertion) order through the group index, matching the filter pattern as it goes; when its
scan budget runs out before the page fills it answers a ``nextToken`` even with few events (as AWS does
for long searches), and no ``nextToken`` once the range is exhausted (``aws logs tail`` stops there).
"""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.logs.common import LOGS_PAGING, group_name_of, now_ms, require_group, require_stream
from taskvpc.domain import logs_events as rules
from taskvpc.domain.logs_filter import FilterPatternError, compile_pattern
from taskvpc.domain.pagination import Pager
from taskvpc.store import logs_repo

PAGE_EVENTS = 10_000
PAGE_BYTES = 1_048_576
SCAN_CHUNK = 2_000
SCAN_BUDGET = 50_000  # events examined per FilterLogEvents call before answering with a nextToken
FIRST: rules.Position = (-(10**18), 0)
LAST: rules.Position = (10**18, 0)


def put_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    events = params["logEvents"]
    ingestion = now_ms(ctx)
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, params["logGroupName"])
        stream = require_stream(conn, group, params["logStreamName"])
        verdict = rules.judge_batch(events, ingestion, group["retention_days"])
        accepted = [(int(events[i]["timestamp"]), str(events[i]["message"])) for i in verdict.accepted]
        logs_repo.put_events(conn, group["id"], stream["id"], accepted, ingestion)
    # The token is accepted and ignored (PutLogEvents API reference); a stable one keeps old clients happy.
    result: dict[str, Any] = {"nextSequenceToken": "1"}
    if verdict.rejected:
        result["rejectedLogEventsInfo"] = verdict.rejected
    return result


def _output(row: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": row["timestamp"], "message": row["message"], "ingestionTime": row["ingestion_time"]}


def _within_bytes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The longest prefix of ``rows`` whose messages (+26 bytes each) fit in one response page."""
    total = 0
    for index, row in enumerate(rows):
        total += len(row["message"].encode()) + rules.EVENT_OVERHEAD_BYTES
        if total > PAGE_BYTES and index > 0:
            return rows[:index]
    return rows


def get_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = group_name_of(params)
    assert name is not None
    limit = params.get("limit", PAGE_EVENTS)
    token = params.get("nextToken")
    direction, position = rules.parse_token(token) if token else (None, None)
    backwards = direction == "b" or (direction is None and not params.get("startFromHead"))
    window = {"start": params.get("startTime"), "end": params.get("endTime"), "limit": limit}
    with ctx.db.read() as conn:
        stream = require_stream(conn, require_group(conn, ctx, name), params["logStreamName"])
        if backwards:
            before = position if direction == "b" else None
            rows = logs_repo.read_stream(
                conn, stream["id"], after=None, before=before, newest_first=True, **window
            )
            rows = list(reversed(_within_bytes(rows)))  # newest kept, shown oldest first
        else:
            after = position if direction == "f" else None
            rows = _within_bytes(
                logs_repo.read_stream(
                    conn, stream["id"], after=after, before=None, newest_first=False, **window
                )
            )
    if rows:
        forward: rules.Position = (rows[-1]["timestamp"], rows[-1]["seq"])
        backward: rules.Position = (rows[0]["timestamp"], rows[0]["seq"])
    elif position is not None:
        forward = backward = position
    else:
        start, end = params.get("startTime"), params.get("endTime")
        forward = (start - 1, 0) if start is not None else FIRST
        backward = (end, 0) if end is not None else LAST
    return {
        "events": [_output(r) for r in rows],
        "nextForwardToken": rules.forward_token(forward),
        "nextBackwardToken": rules.backward_token(backward),
    }


def filter_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = group_name_of(params)
    assert name is not None
    names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise rules.invalid_parameter("You cannot specify both logStreamNames and logStreamNamePrefix.")
    try:
        matches = compile_pattern(params.get("filterPattern"))
    except FilterPatternError as problem:
        raise rules.invalid_parameter(f"Invalid filter pattern: {problem}") from None
    token = params.get("nextToken")
    pager = Pager.of(ctx.page_key, "logs:FilterLogEvents", ctx.region, ctx.account_id, params, LOGS_PAGING)
    bad_token = rules.invalid_parameter("The specified nextToken is invalid.")
    after = pager.decode(token, bad_token)
    if after is not None and not (
        isinstance(after, list) and len(after) == 2 and all(isinstance(v, int) for v in after)
    ):
        raise bad_token
    limit = params.get("limit", PAGE_EVENTS)
    found: list[dict[str, Any]] = []
    position: rules.Position | None = (after[0], after[1]) if after else None
    exhausted = False
    with ctx.db.read() as conn:
        group = require_group(conn, ctx, name)
        streams = logs_repo.streams_by_id(conn, group["id"])
        wanted: list[int] | None = None
        if names is not None:
            wanted = [sid for sid, sname in streams.items() if sname in set(names)]
        elif prefix is not None:
            wanted = [sid for sid, sname in streams.items() if sname.startswith(prefix)]
        window = {"start": params.get("startTime"), "end": params.get("endTime")}
        scanned = size = 0
        while wanted != []:
            want = min(SCAN_CHUNK, SCAN_BUDGET - scanned)
            chunk = logs_repo.scan_group(conn, group["id"], wanted, after=position, limit=want, **window)
            full = False
            for index, row in enumerate(chunk):
                position = (row["timestamp"], row["seq"])
                if matches(row["message"]):
                    found.append(_filtered(row, streams))
                    size += len(row["message"].encode()) + rules.EVENT_OVERHEAD_BYTES
                    if len(found) >= limit or size >= PAGE_BYTES:
                        # The range is done only if this was the last row there is.
                        exhausted = index == len(chunk) - 1 and len(chunk) < want
                        full = True
                        break
            scanned += len(chunk)
            if full:
                break
            if len(chunk) < want:
                exhausted = True
                break
            if scanned >= SCAN_BUDGET:
                break
        else:
            exhausted = True
    result: dict[str, Any] = {"events": found, "searchedLogStreams": []}
    if not exhausted and position is not None:
        result["nextToken"] = pager.encode(list(position))
    return result


def _filtered(row: dict[str, Any], streams: dict[int, str]) -> dict[str, Any]:
    return {
        **_output(row),
        "logStreamName": streams[row["stream_id"]],
        "eventId": rules.event_id(row["timestamp"], row["seq"]),
    }
