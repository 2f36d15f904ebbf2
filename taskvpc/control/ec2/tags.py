"""EC2 tags: CreateTags, DeleteTags, DescribeTags, and ``TagSpecifications`` on create calls.

Tags are rows keyed by (resource id, key); every Describe* reads them with one query per page. An
instance's tags live in its own document (``Tags``, as RunInstances' TagSpecifications wrote them), so
CreateTags/DeleteTags given ``i-`` ids change that document and DescribeTags lists them with type
``instance``; the ``taskvpc:kernel`` tag is taskvpc's to say and is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids
from taskvpc.domain.pagination import Pager, is_pair, is_str
from taskvpc.netmodel import filters
from taskvpc.store import ec2_repo, instances_repo

MAX_TAGS = 50  # user tags per resource (EC2 User Guide, "Tag restrictions")
_TABLE = {
    "vpc": "vpcs",
    "subnet": "subnets",
    "security-group": "security_groups",
    "security-group-rule": "security_group_rules",
    "network-interface": "network_interfaces",
}
_DESCRIBE_FILTERS = ("key", "resource-id", "resource-type", "value")


def check_tags(tags: list[dict[str, Any]]) -> list[dict[str, str]]:
    checked: list[dict[str, str]] = []
    for tag in tags:
        key = tag.get("Key")
        if key is None:
            raise errors.missing_parameter("key")  # unconfirmed wording
        if key.lower().startswith("aws:"):
            raise errors.reserved_tag_key(key)
        value = tag.get("Value")
        if value is None:
            raise errors.tag_value_null()
        checked.append({"Key": key, "Value": value})
    return checked


def from_specs(params: Mapping[str, Any], resource_type: str) -> list[dict[str, str]]:
    """The tags a create call's ``TagSpecifications`` give its new resource."""
    found: list[dict[str, str]] = []
    for spec in params.get("TagSpecifications") or ():
        kind = spec.get("ResourceType")
        if kind != resource_type:
            # "'instance' is not a valid taggable resource type for this operation." # unconfirmed
            raise errors.invalid_parameter_value(
                f"'{kind}' is not a valid taggable resource type for this operation."
            )
        found.extend(check_tags(spec.get("Tags") or []))
    if len({tag["Key"] for tag in found}) > MAX_TAGS:
        raise errors.tag_limit_exceeded()
    return found


def attach(conn: Connection, ctx: RequestContext, resource_id: str, tags: list[dict[str, str]]) -> None:
    if tags:
        kind = ids.resource_type_of(resource_id)
        assert kind is not None, resource_id
        ec2_repo.put_tags(conn, ctx.region, resource_id, kind, tags)


def _check_resources(conn: Connection, ctx: RequestContext, resource_ids: list[str]) -> list[tuple[str, str]]:
    kinds: list[tuple[str, str]] = []
    for resource_id in resource_ids:
        kind = ids.resource_type_of(resource_id)
        if kind is None:
            prefix = resource_id.partition("-")[0]
            if prefix in ids.PREFIX_RESOURCE:
                raise errors.malformed(prefix, resource_id)
            raise errors.invalid_id(resource_id)
        kinds.append((resource_id, kind))
    for resource_id, kind in kinds:
        if not ec2_repo.resource_exists(conn, ctx.region, _TABLE[kind], resource_id):
            raise errors.not_found(ids.RESOURCE_PREFIX[kind], [resource_id])
    return kinds


def _instance_ids(resource_ids: list[str]) -> tuple[list[str], list[str]]:
    """(instance ids, the others): an ``i-`` id is an instance's, well-formed or not."""
    mine = [r for r in resource_ids if r.startswith("i-")]
    return mine, [r for r in resource_ids if not r.startswith("i-")]


def _lock_instances(conn: Connection, ctx: RequestContext, instance_ids: list[str]) -> list[dict[str, Any]]:
    from taskvpc.control.ec2 import instances

    if not instance_ids:
        return []
    instances.check_ids(instance_ids)
    docs = instances_repo.lock_instances(conn, ctx.region, list(dict.fromkeys(instance_ids)))
    instances.require_all(docs, instance_ids)
    return docs


def _retag_instance(conn: Connection, doc: dict[str, Any], new_tags: list[dict[str, str]]) -> None:
    from taskvpc.control.ec2.instances import KERNEL_TAG

    merged = {tag["Key"]: tag["Value"] for tag in doc.get("Tags", [])}
    merged.update({tag["Key"]: tag["Value"] for tag in new_tags if tag["Key"] != KERNEL_TAG["Key"]})
    if len([k for k in merged if k != KERNEL_TAG["Key"]]) > MAX_TAGS:
        raise errors.tag_limit_exceeded()
    doc["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]
    instances_repo.update_instance(conn, doc)


def _untag_instance(conn: Connection, doc: dict[str, Any], named: list[dict[str, Any]] | None) -> None:
    from taskvpc.control.ec2.instances import KERNEL_TAG

    def goes(tag: dict[str, str]) -> bool:
        if tag["Key"] == KERNEL_TAG["Key"]:
            return False
        if named is None:
            return True
        return any(n["Key"] == tag["Key"] and n.get("Value") in (None, tag["Value"]) for n in named)

    doc["Tags"] = [tag for tag in doc.get("Tags", []) if not goes(tag)]
    instances_repo.update_instance(conn, doc)


def create_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    new_tags = check_tags(params.get("Tags") or [])
    resource_ids = list(params.get("Resources") or [])
    if not resource_ids:
        raise errors.missing_parameter("resourceIdSet")  # unconfirmed
    instance_ids, resource_ids = _instance_ids(resource_ids)
    with ctx.db.transaction() as conn:
        docs = _lock_instances(conn, ctx, instance_ids)
        kinds = _check_resources(conn, ctx, resource_ids)
        describe.dry_run(params)
        for doc in docs:
            _retag_instance(conn, doc, new_tags)
        for resource_id, kind in kinds:
            current = {tag["Key"] for tag in ec2_repo.tags_of(conn, [resource_id])[resource_id]}
            if len(current | {tag["Key"] for tag in new_tags}) > MAX_TAGS:
                raise errors.tag_limit_exceeded()
            ec2_repo.put_tags(conn, ctx.region, resource_id, kind, new_tags)
    return {}


def delete_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    resource_ids = list(params.get("Resources") or [])
    if not resource_ids:
        raise errors.missing_parameter("resourceIdSet")  # unconfirmed
    named = params.get("Tags")
    if any(tag.get("Key") is None for tag in named or ()):
        raise errors.missing_parameter("key")  # as CreateTags says it; unconfirmed wording
    instance_ids, resource_ids = _instance_ids(resource_ids)
    with ctx.db.transaction() as conn:
        docs = _lock_instances(conn, ctx, instance_ids)
        _check_resources(conn, ctx, resource_ids)
        describe.dry_run(params)
        for doc in docs:
            _untag_instance(conn, doc, list(named) if named else None)
        for resource_id in resource_ids:
            # No Tags: every tag of the resource goes (EC2 API reference, DeleteTags).
            ec2_repo.remove_tags(conn, resource_id, list(named) if named else None)
    return {}


def describe_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = params.get("Filters")
    filters.check_filter_names(wanted, _DESCRIBE_FILTERS, tags=False)
    describe.dry_run(params)
    with ctx.db.read() as conn:
        rows = ec2_repo.list_tags(conn, ctx.region)
        instance_rows = [
            {
                "ResourceId": doc["InstanceId"],
                "ResourceType": "instance",
                "Key": t["Key"],
                "Value": t["Value"],
            }
            for doc in instances_repo.list_instances(conn, ctx.region)
            for t in doc.get("Tags", [])
        ]
    rows = sorted([*rows, *instance_rows], key=lambda row: (row["ResourceId"], row["Key"]))
    if wanted:
        rows = [
            row
            for row in rows
            if filters.matches(
                wanted,
                {
                    "key": row["Key"],
                    "value": row["Value"],
                    "resource-id": row["ResourceId"],
                    "resource-type": row["ResourceType"],
                },
                {},
            )
        ]
    token = params.get("NextToken")
    pager = Pager.of(ctx.page_key, "ec2:DescribeTags", ctx.region, ctx.account_id, params)
    after = pager.decode(token, errors.invalid_next_token(str(token)), is_pair(is_str, is_str))
    if after is not None:
        rows = [row for row in rows if [row["ResourceId"], row["Key"]] > after]
    limit = params.get("MaxResults")
    if limit is None:  # without MaxResults EC2 answers with everything
        return {"Tags": rows}
    if not 5 <= limit <= 1000:  # DescribeTags documents 5..1000; the model does not bound it
        # DescribeInstances' text for the same check, by analogy # unconfirmed
        raise errors.invalid_parameter_value(
            f"Value ( {limit} ) for parameter maxResults is invalid. Parameter must be between 5 and 1000."
        )
    result: dict[str, Any] = {"Tags": rows[:limit]}
    if len(rows) > limit:
        last = rows[limit - 1]
        result["NextToken"] = pager.encode([last["ResourceId"], last["Key"]])
    return result
