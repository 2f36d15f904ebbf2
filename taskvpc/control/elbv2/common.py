"""What the ELBv2 use cases share: lookups that answer ELB's NotFound errors, new ids, Marker paging."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.domain.pagination import Pager, is_str
from taskvpc.store import elbv2_repo

Doc = dict[str, Any]


def new_suffix(ctx: RequestContext) -> str:
    """The 16 hex digits ending an ELB ARN (derived from the injected id generator)."""
    return hashlib.sha256(ctx.new_id().encode()).hexdigest()[:16]


def lb_not_found(names: list[str]) -> ClientError:
    # "Load balancers '[my-lb]' not found" (CLI transcripts quoting ELB)
    return ClientError("LoadBalancerNotFound", f"Load balancers '[{', '.join(names)}]' not found")


def tg_not_found(names: list[str]) -> ClientError:
    # "Target groups '[arn:...]' not found" (CLI transcripts quoting ELB)
    return ClientError("TargetGroupNotFound", f"Target groups '[{', '.join(names)}]' not found")


def listener_not_found(arns: list[str]) -> ClientError:
    return ClientError("ListenerNotFound", f"Listeners '[{', '.join(arns)}]' not found")  # unconfirmed


def rule_not_found(arns: list[str]) -> ClientError:
    return ClientError("RuleNotFound", f"Rules '[{', '.join(arns)}]' not found")  # unconfirmed


def require_lb(conn: Connection, ctx: RequestContext, arn: str) -> Doc:
    doc = elbv2_repo.get_doc(conn, "load_balancer", ctx.region, arn)
    if doc is None:
        raise lb_not_found([arn])
    return doc


def require_tg(conn: Connection, ctx: RequestContext, arn: str) -> Doc:
    doc = elbv2_repo.get_doc(conn, "target_group", ctx.region, arn)
    if doc is None:
        raise tg_not_found([arn])
    return doc


def require_listener(conn: Connection, ctx: RequestContext, arn: str) -> Doc:
    doc = elbv2_repo.get_doc(conn, "listener", ctx.region, arn)
    if doc is None:
        raise listener_not_found([arn])
    return doc


def require_rule(conn: Connection, ctx: RequestContext, arn: str) -> Doc:
    doc = elbv2_repo.get_doc(conn, "rule", ctx.region, arn)
    if doc is None:
        raise rule_not_found([arn])
    return doc


def attributes(doc: Doc) -> list[dict[str, str]]:
    """A load balancer's or target group's attributes as Describe*Attributes answers them."""
    return [{"Key": key, "Value": value} for key, value in doc["_Attributes"].items()]


def public(doc: Doc) -> Doc:
    """The wire document: members starting with ``_`` are taskvpc's own bookkeeping."""
    return {key: value for key, value in doc.items() if not key.startswith("_")}


_BAD_MARKER = elb.validation("Invalid value for parameter Marker")  # unconfirmed


_PAGING = frozenset({"Marker", "PageSize"})


def page(
    ctx: RequestContext, operation: str, docs: list[Doc], params: dict[str, Any], key: str, list_member: str
) -> dict[str, Any]:
    """One page of ``docs`` (already ordered) after ``Marker``, at most ``PageSize`` (1-400) long; markers
    are bound to the listing (operation, region, account, filters) that issued them."""
    size = params.get("PageSize")
    if size is not None and not 1 <= size <= 400:
        raise elb.validation(f"Page size '{size}' must be between 1 and 400")  # unconfirmed
    pager = Pager.of(ctx.page_key, f"elbv2:{operation}", ctx.region, ctx.account_id, params, _PAGING)
    after = pager.decode(params.get("Marker"), _BAD_MARKER, is_str)
    if after is not None:
        keys = [doc[key] for doc in docs]
        if after not in keys:
            raise _BAD_MARKER
        docs = docs[keys.index(after) + 1 :]
    limit = size or 400
    result: dict[str, Any] = {list_member: [public(doc) for doc in docs[:limit]]}
    if len(docs) > limit:
        result["NextMarker"] = pager.encode(docs[limit - 1][key])
    return result
