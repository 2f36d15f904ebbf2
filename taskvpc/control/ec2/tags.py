"""EC2 tags: CreateTags, DeleteTags, DescribeTags, and ``TagSpecifications`` on create calls.

Tags are rows keyed by (resource id, key); every Describe* reads them with one query per page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids
from taskvpc.domain.pagination import Pager, is_pair, is_str
from taskvpc.netmodel import filters
from taskvpc.store import ec2_repo

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


def create_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    new_tags = check_tags(params.get("Tags") or [])
    resource_ids = list(params.get("Resources") or [])
    if not resource_ids:
        raise errors.missing_parameter("resourceIdSet")  # unconfirmed
    with ctx.db.transaction() as conn:
        kinds = _check_resources(conn, ctx, resource_ids)
        describe.dry_run(params)
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
    with ctx.db.transaction() as conn:
        _check_resources(conn, ctx, resource_ids)
        describe.dry_run(params)
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
