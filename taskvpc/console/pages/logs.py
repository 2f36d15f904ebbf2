"""Log groups, their streams, and a live tail of a stream."""

from __future__ import annotations

import re

from taskvpc.console import views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.console.pages.common import collect
from taskvpc.domain.errors import ClientError

# ---- logs --------------------------------------------------------------------------------------------

_LOG_EVENTS = 200  # the newest events a stream's page shows


async def log_groups(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        groups = await collect(console, user, "logs", "DescribeLogGroups", {}, "logGroups")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "log_groups.html", groups=groups, fmt=views.format_time)


async def _log_tail(console: Console, user: User, group: str, stream: str) -> str:
    params = {"logGroupName": group, "logStreamName": stream, "limit": _LOG_EVENTS, "startFromHead": False}
    try:
        answer = await console.call(user, "logs", "GetLogEvents", params)
    except ClientError as error:
        return console.fragment("_message.html", message=f"{error.code}: {error.message}")
    lines = [(views.format_time(e["timestamp"] / 1000), e["message"]) for e in answer.get("events", [])]
    return console.fragment("_log_lines.html", lines=lines)


async def log_group(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    group = match["group"]
    stream = request.query.get("stream", [""])[0]
    try:
        if stream:
            tail = await _log_tail(console, user, group, stream)
            return console.page(request, user, "log_stream.html", group=group, stream=stream, tail=tail)
        params = {"logGroupName": group, "orderBy": "LastEventTime", "descending": True}
        streams = await collect(console, user, "logs", "DescribeLogStreams", params, "logStreams")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "log_group.html", group=group, streams=streams, fmt=views.format_time)


async def log_stream_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    stream = request.query.get("stream", [""])[0]

    async def render() -> str:
        return await _log_tail(console, user, match["group"], stream)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "log", stopping=console.stream_ends(user))
    return None
