"""CloudWatch Logs through boto3 (and the aws CLI), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ACCOUNT_ID, Server, aws_error

DAY_MS = 86_400_000


@pytest.fixture()
def logs(api: Server) -> Any:
    return api.client("logs")


def now_ms() -> int:
    return int(time.time() * 1000)


def fails(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return aws_error(excinfo)


def put(logs: Any, group: str, stream: str, messages: list[str], start: int | None = None) -> dict[str, Any]:
    base = start if start is not None else now_ms() - len(messages)
    events = [{"timestamp": base + i, "message": m} for i, m in enumerate(messages)]
    return dict(logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events))


@pytest.fixture()
def stream(logs: Any) -> tuple[str, str]:
    logs.create_log_group(logGroupName="/ecs/web")
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="web/app/1")
    return "/ecs/web", "web/app/1"


# ---- groups -------------------------------------------------------------------------------------------


def test_create_describe_delete_group(logs: Any) -> None:
    logs.create_log_group(logGroupName="/ecs/a", kmsKeyId="arn:aws:kms:us-east-1:1:key/k", tags={"team": "x"})
    group = logs.describe_log_groups(logGroupNamePrefix="/ecs/")["logGroups"][0]
    assert group["logGroupName"] == "/ecs/a"
    assert group["arn"] == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/ecs/a:*"
    assert group["logGroupArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:/ecs/a"
    assert group["kmsKeyId"] == "arn:aws:kms:us-east-1:1:key/k"
    assert group["storedBytes"] == 0 and "retentionInDays" not in group
    assert abs(group["creationTime"] - now_ms()) < 60_000
    assert logs.list_tags_log_group(logGroupName="/ecs/a")["tags"] == {"team": "x"}
    assert fails(logs.create_log_group, logGroupName="/ecs/a") == (
        "ResourceAlreadyExistsException",
        "The specified log group already exists",
        400,
    )
    logs.delete_log_group(logGroupName="/ecs/a")
    assert logs.describe_log_groups()["logGroups"] == []
    assert fails(logs.delete_log_group, logGroupName="/ecs/a")[:2] == (
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )


def test_group_names_are_validated(logs: Any) -> None:
    code, message, status = fails(logs.create_log_group, logGroupName="bad:name")
    assert (code, status) == ("InvalidParameterException", 400)
    assert "logGroupName" in message and "regular expression pattern" in message
    assert fails(logs.create_log_group, logGroupName="aws/mine")[0] == "InvalidParameterException"
    assert logs.describe_log_groups()["logGroups"] == []


def test_describe_groups_pagination_prefix_and_pattern(logs: Any) -> None:
    names = [f"/app/{i:02d}" for i in range(7)] + ["/other/Web"]
    for name in names:
        logs.create_log_group(logGroupName=name)
    seen: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"logGroupNamePrefix": "/app/", "limit": 3}
        if token:
            kwargs["nextToken"] = token
        page = logs.describe_log_groups(**kwargs)
        seen += [g["logGroupName"] for g in page["logGroups"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == names[:7]
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePattern="web")["logGroups"]] == [
        "/other/Web"
    ]
    code, message, _ = fails(logs.describe_log_groups, logGroupNamePrefix="/a", logGroupNamePattern="b")
    assert code == "InvalidParameterException" and "mutually exclusive" in message
    assert fails(logs.describe_log_groups, nextToken="garbage!")[0] == "InvalidParameterException"
    for name in ("a_b", "axb", "a_", "A_b", "a/_"):
        logs.create_log_group(logGroupName=name)
    by_prefix = logs.describe_log_groups(logGroupNamePrefix="a_")["logGroups"]
    assert sorted(g["logGroupName"] for g in by_prefix) == ["a_", "a_b"]  # "_" is no wildcard


def test_retention_policy(logs: Any) -> None:
    logs.create_log_group(logGroupName="g")
    logs.put_retention_policy(logGroupName="g", retentionInDays=14)
    assert logs.describe_log_groups()["logGroups"][0]["retentionInDays"] == 14
    code, message, _ = fails(logs.put_retention_policy, logGroupName="g", retentionInDays=2)
    assert code == "InvalidParameterException" and "retentionInDays" in message
    assert logs.describe_log_groups()["logGroups"][0]["retentionInDays"] == 14
    assert (
        fails(logs.put_retention_policy, logGroupName="nope", retentionInDays=1)[0]
        == "ResourceNotFoundException"
    )
    logs.delete_retention_policy(logGroupName="g")
    assert "retentionInDays" not in logs.describe_log_groups()["logGroups"][0]


def test_tags_by_arn_and_by_name(logs: Any) -> None:
    logs.create_log_group(logGroupName="g")
    arn = logs.describe_log_groups()["logGroups"][0]["logGroupArn"]
    logs.tag_resource(resourceArn=arn, tags={"a": "1", "b": "2"})
    logs.untag_resource(resourceArn=arn, tagKeys=["a"])
    logs.tag_log_group(logGroupName="g", tags={"c": "3"})
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2", "c": "3"}
    logs.untag_log_group(logGroupName="g", tags=["c"])
    assert logs.list_tags_log_group(logGroupName="g")["tags"] == {"b": "2"}
    missing = f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:nope"
    assert fails(logs.list_tags_for_resource, resourceArn=missing)[0] == "ResourceNotFoundException"
    too_many = {f"k{i}": "v" for i in range(50)}
    assert fails(logs.tag_resource, resourceArn=arn, tags=too_many)[0] == "TooManyTagsException"
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}


# ---- streams ------------------------------------------------------------------------------------------


def test_streams_create_describe_order_delete(logs: Any) -> None:
    logs.create_log_group(logGroupName="g")
    for name in ("b", "a", "c"):
        logs.create_log_stream(logGroupName="g", logStreamName=name)
    assert fails(logs.create_log_stream, logGroupName="g", logStreamName="a")[:2] == (
        "ResourceAlreadyExistsException",
        "The specified log stream already exists",
    )
    assert (
        fails(logs.create_log_stream, logGroupName="nope", logStreamName="a")[0]
        == "ResourceNotFoundException"
    )
    base = now_ms() - 10_000
    put(logs, "g", "c", ["x"], base)
    put(logs, "g", "a", ["y"], base + 1000)
    put(logs, "g", "b", ["z"], base + 2000)
    names = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="g")["logStreams"]]
    assert names == ["a", "b", "c"]
    by_time = logs.describe_log_streams(logGroupName="g", orderBy="LastEventTime", descending=True)
    assert [s["logStreamName"] for s in by_time["logStreams"]] == ["b", "a", "c"]
    first = logs.describe_log_streams(logGroupName="g", orderBy="LastEventTime", limit=2)
    rest = logs.describe_log_streams(logGroupName="g", orderBy="LastEventTime", nextToken=first["nextToken"])
    assert [s["logStreamName"] for s in first["logStreams"] + rest["logStreams"]] == ["c", "a", "b"]
    stream = by_time["logStreams"][0]
    assert stream["firstEventTimestamp"] == stream["lastEventTimestamp"] == base + 2000
    assert stream["arn"].endswith(":log-group:g:log-stream:b")
    assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="g", logStreamNamePrefix="b")["logStreams"]] == ["b"]  # fmt: skip
    code, message, _ = fails(logs.describe_log_streams, logGroupName="g", orderBy="LastEventTime", logStreamNamePrefix="a")  # fmt: skip
    assert (code, message) == (
        "InvalidParameterException",
        "Cannot order by LastEventTime with a logStreamNamePrefix.",
    )
    logs.delete_log_stream(logGroupName="g", logStreamName="a")
    assert fails(logs.delete_log_stream, logGroupName="g", logStreamName="a")[:2] == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )
    assert len(logs.describe_log_streams(logGroupName="g")["logStreams"]) == 2
    by_arn = logs.describe_log_streams(logGroupIdentifier=f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:g")
    assert len(by_arn["logStreams"]) == 2


# ---- PutLogEvents -------------------------------------------------------------------------------------


def test_put_log_events_limits(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    now = now_ms()
    unordered = [{"timestamp": now, "message": "b"}, {"timestamp": now - 5, "message": "a"}]
    code, message, _ = fails(logs.put_log_events, logGroupName=group, logStreamName=name, logEvents=unordered)
    assert code == "InvalidParameterException" and "chronological" in message
    too_many = [{"timestamp": now, "message": "m"}] * 10_001
    assert fails(logs.put_log_events, logGroupName=group, logStreamName=name, logEvents=too_many)[0] == (
        "InvalidParameterException"
    )
    # 1,048,576 bytes counted with 26 bytes per event: exactly full passes, one byte more does not.
    full = [{"timestamp": now, "message": "x" * (524_288 - 26)}] * 2
    logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=full)
    over = [
        {"timestamp": now, "message": "x" * (524_288 - 26)},
        {"timestamp": now, "message": "x" * (524_288 - 25)},
    ]
    code, message, _ = fails(logs.put_log_events, logGroupName=group, logStreamName=name, logEvents=over)
    assert code == "InvalidParameterException" and "1048576" in message
    span = [{"timestamp": now - DAY_MS - 1, "message": "a"}, {"timestamp": now, "message": "b"}]
    assert fails(logs.put_log_events, logGroupName=group, logStreamName=name, logEvents=span)[0] == (
        "InvalidParameterException"
    )
    missing = fails(logs.put_log_events, logGroupName=group, logStreamName="nope", logEvents=full[:1])
    assert missing[:2] == ("ResourceNotFoundException", "The specified log stream does not exist.")
    events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)["events"]
    assert len(events) == 2  # only the batch that was accepted


def test_too_old_too_new_and_expired_are_rejected_one_by_one(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    now = now_ms()
    events = [
        {"timestamp": now - 15 * DAY_MS, "message": "too old"},
        {"timestamp": now - 15 * DAY_MS + 1, "message": "too old too"},
    ]
    result = logs.put_log_events(
        logGroupName=group, logStreamName=name, logEvents=events, sequenceToken="any"
    )
    assert result["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 1}
    fresh = [{"timestamp": now, "message": "ok"}, {"timestamp": now + 3 * 3600 * 1000, "message": "too new"}]
    result = logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=fresh)
    assert result["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    logs.put_retention_policy(logGroupName=group, retentionInDays=1)
    aged = [
        {"timestamp": now - DAY_MS - 3_600_000, "message": "expired"},
        {"timestamp": now - 7_200_000, "message": "ok2"},
    ]
    result = logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=aged)
    assert result["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 0}
    got = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)["events"]
    assert [e["message"] for e in got] == ["ok2", "ok"]  # in timestamp order


# ---- GetLogEvents -------------------------------------------------------------------------------------


def test_get_log_events_tokens_forward_and_backward(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    base = now_ms() - 100_000
    put(logs, group, name, [f"line {i}" for i in range(25)], base)
    head = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True, limit=10)
    assert [e["message"] for e in head["events"]] == [f"line {i}" for i in range(10)]
    assert head["nextForwardToken"].startswith("f/") and len(head["nextForwardToken"]) == 58
    assert head["nextBackwardToken"].startswith("b/")
    messages = [e["message"] for e in head["events"]]
    token = head["nextForwardToken"]
    while True:
        page = logs.get_log_events(logGroupName=group, logStreamName=name, nextToken=token, limit=10)
        messages += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert messages == [f"line {i}" for i in range(25)]
    tail = logs.get_log_events(logGroupName=group, logStreamName=name, limit=5)  # startFromHead false
    assert [e["message"] for e in tail["events"]] == [f"line {i}" for i in range(20, 25)]
    back = logs.get_log_events(
        logGroupName=group, logStreamName=name, nextToken=tail["nextBackwardToken"], limit=5
    )
    assert [e["message"] for e in back["events"]] == [f"line {i}" for i in range(15, 20)]
    window = logs.get_log_events(
        logGroupName=group, logStreamName=name, startTime=base + 3, endTime=base + 6, startFromHead=True
    )
    assert [e["message"] for e in window["events"]] == ["line 3", "line 4", "line 5"]
    assert window["events"][0]["timestamp"] == base + 3 and "ingestionTime" in window["events"][0]
    bad = fails(logs.get_log_events, logGroupName=group, logStreamName=name, nextToken="x/123")
    assert bad[0] == "InvalidParameterException"
    assert (
        fails(logs.get_log_events, logGroupName=group, logStreamName="nope")[0] == "ResourceNotFoundException"
    )


def test_new_events_appear_after_the_forward_token(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    first = logs.get_log_events(logGroupName=group, logStreamName=name)
    assert first["events"] == []
    put(logs, group, name, ["late"])
    after = logs.get_log_events(logGroupName=group, logStreamName=name, nextToken=first["nextForwardToken"])
    assert [e["message"] for e in after["events"]] == ["late"]


# ---- FilterLogEvents ----------------------------------------------------------------------------------


def test_filter_log_events_patterns_streams_and_pages(logs: Any) -> None:
    logs.create_log_group(logGroupName="g")
    for name in ("app/1", "app/2", "db/1"):
        logs.create_log_stream(logGroupName="g", logStreamName=name)
    base = now_ms() - 60_000
    put(logs, "g", "app/1", ["ERROR boom", "INFO fine", json.dumps({"level": "error", "latency": 700})], base)
    put(logs, "g", "app/2", ["WARN slow", "ERROR again"], base + 1)
    put(logs, "g", "db/1", ["10.0.0.1 - bob [x] GET 404 12", "10.0.0.2 - amy [x] GET 200 9000"], base + 2)
    everything = logs.filter_log_events(logGroupName="g", interleaved=True)
    assert [(e["timestamp"], e["logStreamName"]) for e in everything["events"]] == sorted(
        (e["timestamp"], e["logStreamName"]) for e in everything["events"]
    )
    assert len(everything["events"]) == 7 and "nextToken" not in everything
    assert len({e["eventId"] for e in everything["events"]}) == 7

    def messages(**kwargs: Any) -> list[str]:
        return [e["message"] for e in logs.filter_log_events(logGroupName="g", **kwargs)["events"]]

    assert messages(filterPattern="ERROR") == ["ERROR boom", "ERROR again"]
    assert messages(filterPattern="?WARN ?INFO") == ["INFO fine", "WARN slow"]
    assert messages(filterPattern="ERROR -again") == ["ERROR boom"]
    assert messages(filterPattern='{ $.level = "error" && $.latency > 500 }') == [
        json.dumps({"level": "error", "latency": 700})
    ]
    assert messages(filterPattern="[ip, dash, user, t, verb, status = 4*, bytes]") == [
        "10.0.0.1 - bob [x] GET 404 12"
    ]
    assert messages(filterPattern="[..., bytes > 1000]") == ["10.0.0.2 - amy [x] GET 200 9000"]
    assert messages(filterPattern="ERROR", logStreamNames=["app/2"]) == ["ERROR again"]
    assert messages(logStreamNamePrefix="db/") == [
        "10.0.0.1 - bob [x] GET 404 12",
        "10.0.0.2 - amy [x] GET 200 9000",
    ]
    assert messages(startTime=base + 2, endTime=base + 3) == [  # same timestamp: in the order stored
        json.dumps({"level": "error", "latency": 700}),
        "ERROR again",
        "10.0.0.1 - bob [x] GET 404 12",
    ]
    pages: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": 3}
        if token:
            kwargs["nextToken"] = token
        page = logs.filter_log_events(logGroupName="g", **kwargs)
        pages += [e["eventId"] for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            break
    assert pages == [e["eventId"] for e in everything["events"]]
    code, _, _ = fails(logs.filter_log_events, logGroupName="g", filterPattern="{ $.a = ")
    assert code == "InvalidParameterException"
    code, message, _ = fails(
        logs.filter_log_events, logGroupName="g", logStreamNames=["a"], logStreamNamePrefix="a"
    )
    assert code == "InvalidParameterException" and "logStreamNamePrefix" in message
    assert fails(logs.filter_log_events, logGroupName="nope")[0] == "ResourceNotFoundException"


def test_paginator_reads_everything(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    put(logs, group, name, [f"m{i}" for i in range(30)])
    paginator = logs.get_paginator("filter_log_events")
    got = [e["message"] for page in paginator.paginate(logGroupName=group, PaginationConfig={"PageSize": 7}) for e in page["events"]]  # fmt: skip
    assert got == [f"m{i}" for i in range(30)]


# ---- the aws CLI --------------------------------------------------------------------------------------


def test_aws_cli_get_and_filter_log_events(api: Server, logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    put(logs, group, name, ["hello from the cli", "ERROR from the cli"])
    out = json.loads(
        api.aws("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", name).stdout
    )
    assert [e["message"] for e in out["events"]] == ["hello from the cli", "ERROR from the cli"]
    out = json.loads(
        api.aws("logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", "ERROR").stdout
    )
    assert [(e["logStreamName"], e["message"]) for e in out["events"]] == [(name, "ERROR from the cli")]


# ---- what `aws logs tail --follow` (CLI v2) does ----------------------------------------------------
# aws/aws-cli v2 awscli/customizations/logs/tail.py, FollowLogEventsGenerator: FilterLogEvents with
# interleaved=True; while an answer has nextToken, ask again with it at once; when it has none, drop the
# token, set startTime to the newest timestamp seen, sleep 5 s and ask again, yielding only eventIds not
# yet seen at that timestamp. The CLI v1 in the venv has no `logs tail`, so the loop is replayed here.


def follow(logs: Any, group: str, start: int, polls: int, between: Any) -> list[str]:
    seen: dict[int, set[str]] = {}
    shown: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "interleaved": True, "startTime": start}
    done = 0
    while done < polls:
        answer = logs.filter_log_events(**kwargs)
        for event in answer["events"]:
            if event["eventId"] not in seen.setdefault(event["timestamp"], set()):
                seen[event["timestamp"]].add(event["eventId"])
                shown.append(event["message"])
        if seen:
            newest = max(seen)
            seen = {newest: seen[newest]}
        if "nextToken" in answer:
            kwargs["nextToken"] = answer["nextToken"]
            continue
        kwargs.pop("nextToken", None)
        if seen:
            kwargs["startTime"] = max(seen)
        done += 1
        between(done)
    return shown


def test_tail_follow_sees_every_event_once(logs: Any, stream: tuple[str, str]) -> None:
    group, name = stream
    now = now_ms()
    logs.create_log_stream(logGroupName=group, logStreamName="other")
    put(logs, group, name, ["a1", "a2"], now - 10)

    def between(poll: int) -> None:
        if poll == 1:  # new events at the very timestamp the next poll starts from, and later
            logs.put_log_events(
                logGroupName=group,
                logStreamName="other",
                logEvents=[
                    {"timestamp": now - 9, "message": "b-same-ms"},
                    {"timestamp": now, "message": "b2"},
                ],
            )
        if poll == 2:
            put(logs, group, name, [f"c{i}" for i in range(25)], now + 1)

    shown = follow(logs, group, now - 60_000, polls=4, between=between)
    assert shown == ["a1", "a2", "b-same-ms", "b2"] + [f"c{i}" for i in range(25)]
