"""Task definition use cases: register, describe, list, families, deregister, delete."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import tagging
from taskvpc.domain import taskdef
from taskvpc.domain.arns import parse_arn, task_definition_arn
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.domain.pagination import Pager, is_int, is_pair, is_str, page_size
from taskvpc.store import ecs_repo

_NOT_FOUND = "Unable to describe task definition."
_BAD_TOKEN = invalid_parameter("Invalid nextToken.")  # unconfirmed wording
# ECS keeps a task definition to 64 KiB (Amazon ECS service quotas: "Task definition size").
MAX_TASK_DEFINITION_BYTES = 65536


def check_size(params: dict[str, Any]) -> None:
    """Refuse a task definition over ECS's 64 KiB before anything of it is validated or stored. What
    counts is the registration as compact JSON without its tags # unconfirmed: which bytes ECS counts."""
    size = len(orjson.dumps({k: v for k, v in params.items() if k != "tags"}))
    if size > MAX_TASK_DEFINITION_BYTES:
        # ECS's own text (CloudTrail errorMessage of a RegisterTaskDefinition over the limit).
        raise ClientError(
            "ClientException",
            f"Actual length: '{size}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes.",
        )


def register_task_definition(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    check_size(params)
    new_tags = params.get("tags", [])
    tagging.check_new_tags(new_tags)
    body = taskdef.validate_registration(params)
    family = body["family"]
    with ctx.db.transaction() as conn:
        for _attempt in range(20):
            revision = ecs_repo.next_revision(conn, ctx.region, family)
            stored = {
                "taskDefinitionArn": task_definition_arn(ctx.region, ctx.account_id, family, revision),
                **body,
                "revision": revision,
                "status": "ACTIVE",
                "registeredAt": ctx.now,
                "registeredBy": ctx.principal_arn,
            }
            if ecs_repo.insert_task_definition(conn, ctx.region, stored):
                break
        else:
            raise ClientError("ServerException", "Could not allocate a revision.", 500, sender_fault=False)
        ecs_repo.put_tags(conn, ctx.region, stored["taskDefinitionArn"], new_tags)
    result: dict[str, Any] = {"taskDefinition": stored}
    if new_tags:
        result["tags"] = new_tags
    return result


def parse_identifier(ctx: RequestContext, identifier: str) -> tuple[str, int | None]:
    """(family, revision) from ``family``, ``family:revision`` or a task definition ARN of this account
    and region (another's is not found); a revision must be an ASCII number a revision can be."""
    text = identifier
    if identifier.startswith("arn:"):
        arn = parse_arn(identifier)
        if (
            arn is None
            or arn.resource_type != "task-definition"
            or not arn.resource_id
            or not arn.is_local(ctx.region, ctx.account_id)
        ):
            raise ClientError("ClientException", _NOT_FOUND)
        text = arn.resource_id
    family, colon, revision = text.rpartition(":")
    if not colon:
        return text, None
    number = taskdef.parse_revision(revision)
    if number is None or not family:
        raise ClientError("ClientException", _NOT_FOUND)
    return family, number


def find_task_definition(conn: Connection, ctx: RequestContext, identifier: str) -> dict[str, Any] | None:
    """A bare family means its newest ACTIVE revision; an explicit revision may be INACTIVE."""
    family, revision = parse_identifier(ctx, identifier)
    if revision is None:
        return ecs_repo.latest_active_task_definition(conn, ctx.region, family)
    found = ecs_repo.get_task_definition(conn, ctx.region, family, revision)
    if found is None or found["status"] == "DELETE_IN_PROGRESS":
        return None
    return found


def describe_task_definition(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        found = find_task_definition(conn, ctx, params["taskDefinition"])
        if found is None:
            raise ClientError("ClientException", _NOT_FOUND)
        result: dict[str, Any] = {"taskDefinition": found}
        if "TAGS" in params.get("include", ()):
            result["tags"] = ecs_repo.get_tags(conn, found["taskDefinitionArn"])
    return result


def list_task_definitions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pager = Pager.of(ctx.page_key, "ecs:ListTaskDefinitions", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_pair(is_str, is_int))
    limit = page_size(params.get("maxResults"), 100, 100)
    with ctx.db.read() as conn:
        keys = ecs_repo.list_task_definition_keys(
            conn,
            ctx.region,
            family=params.get("familyPrefix"),
            status=params.get("status", "ACTIVE"),
            descending=params.get("sort", "ASC") == "DESC",
            after=(after[0], after[1]) if after else None,
            limit=limit + 1,
        )
    result: dict[str, Any] = {"taskDefinitionArns": [arn for _f, _r, arn in keys[:limit]]}
    if len(keys) > limit:
        family, revision, _arn = keys[limit - 1]
        result["nextToken"] = pager.encode([family, revision])
    return result


def list_task_definition_families(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pager = Pager.of(ctx.page_key, "ecs:ListTaskDefinitionFamilies", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_str)
    if len(params.get("familyPrefix") or "") > taskdef.MAX_FAMILY_LENGTH:
        return {"families": []}  # no family is that long; SQLite refuses LIKE patterns over 50,000 bytes
    limit = page_size(params.get("maxResults"), 100, 100)
    with ctx.db.read() as conn:
        families = ecs_repo.list_families(
            conn,
            ctx.region,
            prefix=params.get("familyPrefix"),
            status=params.get("status", "ALL"),
            after=after,
            limit=limit + 1,
        )
    result: dict[str, Any] = {"families": families[:limit]}
    if len(families) > limit:
        result["nextToken"] = pager.encode(families[limit - 1])
    return result


def deregister_task_definition(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    family, revision = parse_identifier(ctx, params["taskDefinition"])
    if revision is None:
        raise ClientError(
            "ClientException",
            "Invalid revision number. Number: " + family,  # unconfirmed: ECS demands family:revision here
        )
    with ctx.db.transaction() as conn:
        found = ecs_repo.get_task_definition(conn, ctx.region, family, revision)
        if found is None or found["status"] == "DELETE_IN_PROGRESS":
            raise ClientError("ClientException", "The specified task definition does not exist.")
        if found["status"] == "ACTIVE":
            found = {**found, "status": "INACTIVE", "deregisteredAt": ctx.now}
            ecs_repo.update_task_definition(conn, ctx.region, found)
    return {"taskDefinition": found}


def delete_task_definitions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    deleted: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    with ctx.db.transaction() as conn:
        for identifier in params["taskDefinitions"]:
            family, revision = parse_identifier(ctx, identifier)
            found = (
                ecs_repo.get_task_definition(conn, ctx.region, family, revision)
                if revision is not None
                else None
            )
            if found is None:
                failures.append({"arn": identifier, "reason": "TASK_DEFINITION_NOT_FOUND"})  # unconfirmed
                continue
            if found["status"] == "ACTIVE":
                failures.append(
                    {
                        "arn": found["taskDefinitionArn"],
                        "reason": "The specified task definition is still in ACTIVE status. "
                        "Please deregister the target and try again.",  # unconfirmed wording
                    }
                )
                continue
            found = {**found, "status": "DELETE_IN_PROGRESS", "deleteRequestedAt": ctx.now}
            ecs_repo.update_task_definition(conn, ctx.region, found)
            deleted.append(found)
    return {"taskDefinitions": deleted, "failures": failures}
