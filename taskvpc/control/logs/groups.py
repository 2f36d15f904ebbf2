"""Log groups: create, delete, describe, retention, and tags (the ARN-based and the legacy name-based calls)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from taskvpc.control.context import RequestContext
from taskvpc.control.logs.common import (
    GROUP_NOT_FOUND,
    LOGS_PAGING,
    already_exists,
    group_arn,
    not_found,
    now_ms,
    require_group,
)
from taskvpc.domain.errors import ClientError
from taskvpc.domain.logs_events import check_group_name, check_retention, invalid_parameter
from taskvpc.domain.pagination import Pager
from taskvpc.store import logs_repo

MAX_TAGS = 50
DESCRIBE_LIMIT = 50


def create_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["logGroupName"]
    check_group_name(name)
    tags = params.get("tags") or {}
    if len(tags) > MAX_TAGS:
        raise invalid_parameter(f"A log group can have at most {MAX_TAGS} tags.")  # unconfirmed
    values = {
        "region": ctx.region,
        "name": name,
        "arn": group_arn(ctx, name),
        "created_at": now_ms(ctx),
        "retention_days": None,
        "kms_key_id": params.get("kmsKeyId"),  # recorded and shown; taskvpc does not encrypt with it
        "log_group_class": params.get("logGroupClass", "STANDARD"),
    }
    try:
        with ctx.db.transaction() as conn:
            if logs_repo.get_group(conn, ctx.region, name) is not None:
                raise already_exists("The specified log group already exists")
            group_id = logs_repo.insert_group(conn, values)
            logs_repo.put_tags(conn, group_id, tags)
    except IntegrityError:  # a concurrent create of the same name won the race
        raise already_exists("The specified log group already exists") from None
    return {}


def delete_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, params["logGroupName"])
        logs_repo.delete_group(conn, group["id"])
    return {}


def describe_log_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    prefix, pattern = params.get("logGroupNamePrefix"), params.get("logGroupNamePattern")
    if prefix is not None and pattern is not None:
        raise invalid_parameter(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
        )
    limit = params.get("limit", DESCRIBE_LIMIT)
    pager = Pager.of(ctx.page_key, "logs:DescribeLogGroups", ctx.region, ctx.account_id, params, LOGS_PAGING)
    token = params.get("nextToken")
    after = pager.decode(token, invalid_parameter("The specified nextToken is invalid."))
    if after is not None and not isinstance(after, str):
        raise invalid_parameter("The specified nextToken is invalid.")
    wanted = set(params.get("logGroupIdentifiers") or ())
    with ctx.db.read() as conn:
        if pattern or wanted:
            rows = logs_repo.list_groups(conn, ctx.region, prefix, after, None)
            if pattern:
                rows = [r for r in rows if pattern.lower() in r["name"].lower()]
            if wanted:
                rows = [r for r in rows if r["name"] in wanted or r["arn"] in wanted]
            rows = rows[: limit + 1]
        else:
            rows = logs_repo.list_groups(conn, ctx.region, prefix, after, limit + 1)
        page = rows[:limit]
        shown = [_group_document(r, logs_repo.stored_bytes(conn, r["id"])) for r in page]
    result: dict[str, Any] = {"logGroups": shown}
    if len(rows) > limit:
        result["nextToken"] = pager.encode(page[-1]["name"])
    return result


def _group_document(row: dict[str, Any], stored: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "logGroupName": row["name"],
        "creationTime": row["created_at"],
        "metricFilterCount": 0,
        "arn": row["arn"] + ":*",
        "logGroupArn": row["arn"],
        "storedBytes": stored,
        "logGroupClass": row["log_group_class"],
        "deletionProtectionEnabled": False,
    }
    if row["retention_days"] is not None:
        doc["retentionInDays"] = row["retention_days"]
    if row["kms_key_id"] is not None:
        doc["kmsKeyId"] = row["kms_key_id"]
    return doc


def put_retention_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    days = params["retentionInDays"]
    check_retention(days)
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, params["logGroupName"])
        logs_repo.set_retention(conn, group["id"], days)
    return {}


def delete_retention_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, params["logGroupName"])
        logs_repo.set_retention(conn, group["id"], None)
    return {}


# ---- tags -------------------------------------------------------------------------------------------


def _group_of_arn(ctx: RequestContext, arn: str) -> str:
    prefix = f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:"
    if not arn.startswith(prefix) or len(arn) == len(prefix):
        if arn.startswith("arn:aws:logs:"):
            raise not_found(GROUP_NOT_FOUND)
        raise invalid_parameter(f"Invalid resource arn: {arn}")  # unconfirmed
    return arn[len(prefix) :].removesuffix(":*")


def _tag(ctx: RequestContext, name: str, tags: dict[str, str]) -> None:
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, name)
        merged = {**logs_repo.get_tags(conn, group["id"]), **tags}
        if len(merged) > MAX_TAGS:
            raise ClientError(
                "TooManyTagsException", f"A resource can have no more than {MAX_TAGS} tags."
            )  # unconfirmed
        logs_repo.put_tags(conn, group["id"], tags)


def _untag(ctx: RequestContext, name: str, keys: list[str]) -> None:
    with ctx.db.transaction() as conn:
        group = require_group(conn, ctx, name)
        logs_repo.delete_tags(conn, group["id"], keys)


def _tags(ctx: RequestContext, name: str) -> dict[str, str]:
    with ctx.db.read() as conn:
        return logs_repo.get_tags(conn, require_group(conn, ctx, name)["id"])


def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _tag(ctx, _group_of_arn(ctx, params["resourceArn"]), params["tags"])
    return {}


def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _untag(ctx, _group_of_arn(ctx, params["resourceArn"]), params["tagKeys"])
    return {}


def list_tags_for_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"tags": _tags(ctx, _group_of_arn(ctx, params["resourceArn"]))}


def tag_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _tag(ctx, params["logGroupName"], params["tags"])
    return {}


def untag_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    _untag(ctx, params["logGroupName"], params["tags"])
    return {}


def list_tags_log_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"tags": _tags(ctx, params["logGroupName"])}
