"""TagResource, UntagResource and ListTagsForResource over the ECS resources that exist so far."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.domain import taskdef
from taskvpc.domain.arns import parse_arn
from taskvpc.domain.errors import ClientError, cluster_not_found, invalid_parameter
from taskvpc.store import ecs_repo, services_repo, tasks_repo

MAX_TAGS = 50


def check_new_tags(new_tags: list[dict[str, str]]) -> None:
    if len(new_tags) > MAX_TAGS:
        raise invalid_parameter(
            f"The number of tags specified exceeds the maximum of {MAX_TAGS}."
        )  # unconfirmed
    keys = [tag.get("key") for tag in new_tags]
    if len(set(keys)) != len(keys):
        # the store keeps one value per key; CloudFormation's words for the same refusal # unconfirmed for ECS
        raise invalid_parameter("Tags contain duplicate keys; tag keys must be unique.")
    for tag in new_tags:
        key = tag.get("key")
        if not key:
            raise invalid_parameter("Tag key cannot be null or empty.")  # unconfirmed
        if key.lower().startswith("aws:"):
            raise invalid_parameter(
                "Tag keys beginning with 'aws:' are reserved for system use."
            )  # unconfirmed


def _require_resource(conn: Connection, ctx: RequestContext, resource_arn: str) -> None:
    arn = parse_arn(resource_arn)
    if arn is None or arn.service != "ecs":
        raise invalid_parameter("Invalid Arn")  # unconfirmed
    if not arn.is_local(ctx.region, ctx.account_id):
        raise invalid_parameter("The specified resource ARN is not in this region or account.")  # unconfirmed
    kind, resource_id = arn.resource_type, arn.resource_id
    if kind == "cluster":
        cluster = ecs_repo.get_cluster(conn, ctx.region, resource_id)
        if cluster is None or cluster["status"] != "ACTIVE":
            raise cluster_not_found("The specified cluster is not found.")  # unconfirmed wording
        return
    if kind == "task-definition":
        family, _, revision = resource_id.rpartition(":")
        number = taskdef.parse_revision(revision)
        found = number is not None and ecs_repo.get_task_definition(conn, ctx.region, family, number)
        if not found:
            raise ClientError(
                "ClientException", "The specified task definition does not exist."
            )  # unconfirmed
        return
    if kind in ("task", "container-instance"):
        cluster_name, _, item_id = resource_id.rpartition("/")
        if kind == "task":
            present = item_id in tasks_repo.get_tasks(conn, ctx.region, cluster_name, [item_id])
        else:
            present = item_id in tasks_repo.get_instances(conn, ctx.region, cluster_name, [item_id])
        if not present:
            raise invalid_parameter("The specified resource is not found.")  # unconfirmed wording
        return
    if kind == "service":  # service/<cluster>/<name>
        cluster_name, _, name = resource_id.rpartition("/")
        found = services_repo.find_service(conn, ctx.region, cluster_name or "default", name)
        if found is None or found["status"] == "INACTIVE":
            raise ClientError("ServiceNotFoundException", "Service not found.")  # real text
        return
    if kind == "capacity-provider":
        provider = services_repo.get_capacity_provider(conn, ctx.region, resource_id)
        if provider is None or provider["status"] != "ACTIVE":
            raise invalid_parameter("The specified capacity provider does not exist.")  # unconfirmed
        return
    raise invalid_parameter(f"The specified resource type '{kind}' does not support tagging.")  # unconfirmed


def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    new_tags = params["tags"]
    check_new_tags(new_tags)
    with ctx.db.transaction() as conn:
        _require_resource(conn, ctx, params["resourceArn"])
        existing = {tag["key"] for tag in ecs_repo.get_tags(conn, params["resourceArn"])}
        if len(existing | {tag["key"] for tag in new_tags}) > MAX_TAGS:
            raise invalid_parameter(f"The number of tags specified exceeds the maximum of {MAX_TAGS}.")
        ecs_repo.put_tags(conn, ctx.region, params["resourceArn"], new_tags)
    return {}


def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        _require_resource(conn, ctx, params["resourceArn"])
        ecs_repo.remove_tags(conn, params["resourceArn"], params["tagKeys"])
    return {}


def list_tags_for_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        _require_resource(conn, ctx, params["resourceArn"])
        return {"tags": ecs_repo.get_tags(conn, params["resourceArn"])}
