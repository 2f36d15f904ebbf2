"""AddTags, RemoveTags, DescribeTags over load balancers, target groups, listeners and rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import common
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.store import elbv2_repo

_MAX_TAGS = 50


def checked_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    for tag in tags:
        if tag["Key"].lower().startswith("aws:"):
            # Reserved prefix, as every AWS service answers it # unconfirmed wording for ELB
            raise elb.validation("Tag keys starting with 'aws:' are reserved for internal use")
    if len({t["Key"] for t in tags}) > _MAX_TAGS:
        raise ClientError(
            "TooManyTags",
            "The quota for the number of tags that can be assigned to a load balancer has been reached",
        )
    return tags


def _require_resource(conn: Connection, ctx: RequestContext, arn: str) -> None:
    if ":loadbalancer/" in arn:
        common.require_lb(conn, ctx, arn)
    elif ":targetgroup/" in arn:
        common.require_tg(conn, ctx, arn)
    elif ":listener-rule/" in arn:
        common.require_rule(conn, ctx, arn)
    elif ":listener/" in arn:
        common.require_listener(conn, ctx, arn)
    else:
        raise elb.validation(
            f"'{arn}' is not a valid load balancer, target group, listener or rule ARN"
        )  # unconfirmed


def add_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    tags = checked_tags(params["Tags"])
    with ctx.db.transaction() as conn:
        for arn in params["ResourceArns"]:
            _require_resource(conn, ctx, arn)
            present = {t["Key"] for t in elbv2_repo.tags_of(conn, [arn])[arn]}
            if len(present | {t["Key"] for t in tags}) > _MAX_TAGS:
                raise ClientError(
                    "TooManyTags",
                    "The quota for the number of tags that can be assigned to a load balancer has been reached",
                )
            elbv2_repo.put_tags(conn, ctx.region, arn, tags)
    return {}


def remove_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        for arn in params["ResourceArns"]:
            _require_resource(conn, ctx, arn)
            elbv2_repo.remove_tags(conn, arn, list(params["TagKeys"]))
    return {}


def describe_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arns = list(params["ResourceArns"])
    if len(arns) > 20:
        raise elb.validation("You cannot specify more than '20' resource ARNs")  # unconfirmed
    with ctx.db.read() as conn:
        for arn in arns:
            _require_resource(conn, ctx, arn)
        found = elbv2_repo.tags_of(conn, arns)
    return {"TagDescriptions": [{"ResourceArn": arn, "Tags": found[arn]} for arn in arns]}
