"""PutAttributes, ListAttributes, DeleteAttributes: attributes of container instances.

Custom attributes (PutAttributes) sit beside the ones the agent registers (``ecs.*``, capabilities) and
feed the cluster query language (``memberOf``, ``ListContainerInstances --filter``). Limits and character
sets are the API reference's: names up to 128 characters of letters, digits, ``-_/\\.``; values up to 128
characters of letters, digits, ``-_.@/\\:`` and spaces, not starting or ending with a space; at most 10
custom attributes per resource.
"""

from __future__ import annotations

import re
from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import task_state
from taskvpc.control.ecs.clusters import DEFAULT_CLUSTER, cluster_name_of
from taskvpc.control.ecs.container_instances import find_instances
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.domain.pagination import Pager, is_pair, is_str, page_size
from taskvpc.store import tasks_repo

TARGET_TYPE = "container-instance"
MAX_CUSTOM = 10
_NAME = re.compile(r"[A-Za-z0-9_\-/\\.]{1,128}")
_VALUE = re.compile(r"[A-Za-z0-9_\-.@/\\: ]{1,128}")
_BAD_TOKEN = invalid_parameter("Invalid nextToken.")  # unconfirmed wording


def _check(attribute: dict[str, Any], *, with_value: bool) -> None:
    name = attribute.get("name", "")
    if not _NAME.fullmatch(name):
        raise invalid_parameter(f"Invalid attribute name: {name}")  # unconfirmed wording
    value = attribute.get("value")
    if with_value and value is not None and (not _VALUE.fullmatch(value) or value != value.strip(" ")):
        raise invalid_parameter(f"Invalid attribute value: {value}")  # unconfirmed wording
    if attribute.get("targetType", TARGET_TYPE) != TARGET_TYPE:
        raise invalid_parameter(f"Invalid target type: {attribute.get('targetType')}")  # unconfirmed
    if not attribute.get("targetId"):
        raise invalid_parameter(
            "targetId must be specified for container instance attributes."
        )  # unconfirmed


def _targets(
    ctx: RequestContext, conn: Any, cluster: str, attributes: list[dict[str, Any]]
) -> dict[str, Any]:
    found, missing = find_instances(
        conn, ctx, cluster, list(dict.fromkeys(a["targetId"] for a in attributes))
    )
    if missing:
        target = next(iter(missing))
        raise ClientError("TargetNotFoundException", f"Could not find {target}.")  # unconfirmed wording
    return found


def put_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    attributes = params["attributes"]
    if len(attributes) > MAX_CUSTOM:
        raise invalid_parameter(f"attributes can have at most {MAX_CUSTOM} items.")  # patterned, unconfirmed
    for attribute in attributes:
        _check(attribute, with_value=True)
    with ctx.db.transaction() as conn:
        task_state.lock(conn, ctx, cluster)
        targets = _targets(ctx, conn, cluster, attributes)
        result = []
        for target_id, row in targets.items():
            mine = [a for a in attributes if a["targetId"] == target_id]
            existing = tasks_repo.attributes_of(conn, [row["id"]])[row["id"]]
            custom = {name for name, _value, is_custom in existing if is_custom}
            if len(custom | {a["name"] for a in mine}) > MAX_CUSTOM:
                # the API reference's description of AttributeLimitExceededException
                raise ClientError(
                    "AttributeLimitExceededException",
                    "You can apply up to 10 custom attributes for each resource.",
                )
            tasks_repo.put_attributes(conn, row, [(a["name"], a.get("value")) for a in mine], custom=True)
            tasks_repo.update_instance(conn, row["id"])
            for a in mine:
                shown = {"name": a["name"], "targetId": a["targetId"]}
                if a.get("value") is not None:
                    shown["value"] = a["value"]
                if "targetType" in a:
                    shown["targetType"] = a["targetType"]
                result.append(shown)
    return {"attributes": result}


def delete_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    attributes = params["attributes"]
    for attribute in attributes:
        _check(attribute, with_value=False)
    with ctx.db.transaction() as conn:
        task_state.lock(conn, ctx, cluster)
        targets = _targets(ctx, conn, cluster, attributes)
        for target_id, row in targets.items():
            names = [a["name"] for a in attributes if a["targetId"] == target_id]
            tasks_repo.delete_attributes(conn, row["id"], names)
            tasks_repo.update_instance(conn, row["id"])
    return {"attributes": attributes}


def list_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    cluster = cluster_name_of(ctx, params.get("cluster") or DEFAULT_CLUSTER)
    if params.get("attributeValue") is not None and not params.get("attributeName"):
        raise invalid_parameter("attributeName must be specified when attributeValue is.")  # unconfirmed
    pager = Pager.of(ctx.page_key, "ecs:ListAttributes", ctx.region, ctx.account_id, params)
    after = pager.decode(params.get("nextToken"), _BAD_TOKEN, is_pair(is_str, is_str))
    limit = page_size(params.get("maxResults"), 100, 100)
    with ctx.db.read() as conn:
        task_state.require_cluster(conn, ctx, cluster)
        rows = tasks_repo.list_attributes(
            conn, ctx.region, cluster, name=params.get("attributeName"), value=params.get("attributeValue")
        )
    if after is not None:
        rows = [r for r in rows if (r[0], r[1]) > (after[0], after[1])]
    page = rows[:limit]
    result: dict[str, Any] = {
        "attributes": [
            {
                "name": name,
                **({"value": value} if value is not None else {}),
                "targetType": TARGET_TYPE,
                "targetId": arn,
            }
            for arn, name, value in page
        ]
    }
    if len(rows) > limit:
        result["nextToken"] = pager.encode([page[-1][0], page[-1][1]])
    return result
