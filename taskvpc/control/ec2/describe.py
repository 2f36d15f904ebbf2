"""What every EC2 ``Describe*`` does the same way: ids, filters, pagination, ``DryRun``.

EC2's order, which we keep: malformed ids are refused first, then unknown filter names, then ``DryRun``
answers; then the resources are read, every explicitly named id must exist (one missing fails the whole
call), filters narrow the set, and ``MaxResults``/``NextToken`` page through it in id order. A token is
the last id returned, so pages stay stable while resources come and go.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import errors, ids
from taskvpc.domain.pagination import Pager, is_str
from taskvpc.netmodel import filters
from taskvpc.wire.query import dry_run_error

Doc = dict[str, Any]


def dry_run(params: Mapping[str, Any]) -> None:
    """Raise EC2's DryRunOperation when ``DryRun`` is set: call it once the request would succeed."""
    if params.get("DryRun"):
        raise dry_run_error()


def tag_map(doc: Mapping[str, Any], member: str = "Tags") -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in doc.get(member) or ()}


@dataclass(frozen=True)
class Listing:
    """How one resource kind is described."""

    prefix: str  # id prefix: 'vpc'
    id_member: str  # 'VpcId'
    supported_filters: Collection[str]
    filter_values: Callable[[Doc], Mapping[str, filters.FilterValue]]
    tags_member: str = "Tags"


def check_request(listing: Listing, params: Mapping[str, Any], id_param: str | None) -> list[str] | None:
    """Validate ids and filter names, then honour DryRun; the requested ids (None: all)."""
    requested = params.get(id_param) if id_param else None
    if requested is not None:
        ids.check(listing.prefix, requested)
    filters.check_filter_names(params.get("Filters"), listing.supported_filters)
    dry_run(params)
    return list(requested) if requested is not None else None


def require_all(listing: Listing, docs: list[Doc], requested: list[str] | None) -> None:
    if not requested:
        return
    found = {doc[listing.id_member] for doc in docs}
    missing = [resource_id for resource_id in dict.fromkeys(requested) if resource_id not in found]
    if missing:
        raise errors.not_found(listing.prefix, missing)


def select(listing: Listing, docs: list[Doc], params: Mapping[str, Any]) -> list[Doc]:
    wanted = params.get("Filters")
    if not wanted:
        return docs
    return [
        doc
        for doc in docs
        if filters.matches(wanted, listing.filter_values(doc), tag_map(doc, listing.tags_member))
    ]


def page(
    listing: Listing, docs: list[Doc], params: Mapping[str, Any], pager: Pager
) -> tuple[list[Doc], str | None]:
    """One page in id order, and the token for the next (None when this is the last)."""
    token = params.get("NextToken")
    after = pager.decode(token, errors.invalid_next_token(str(token)), is_str)
    ordered = sorted(docs, key=lambda doc: str(doc[listing.id_member]))
    if after is not None:
        ordered = [doc for doc in ordered if doc[listing.id_member] > after]
    limit = params.get("MaxResults")
    if limit is not None and limit < 1:  # where the model sets no minimum, the listing does
        # unconfirmed: EC2's exact text for a MaxResults below 1 on listings without a model minimum
        raise errors.invalid_parameter_value(
            f"Value ( {limit} ) for parameter maxResults is invalid. Parameter must be greater than 0."
        )
    if limit is None or len(ordered) <= limit:  # without MaxResults EC2 answers with everything
        return ordered, None
    chunk = ordered[:limit]
    return chunk, pager.encode(chunk[-1][listing.id_member])


def respond(
    ctx: RequestContext,
    listing: Listing,
    docs: list[Doc],
    params: Mapping[str, Any],
    requested: list[str] | None,
    result_key: str,
) -> dict[str, Any]:
    """The common tail of a Describe*: existence of named ids, filters, one page."""
    require_all(listing, docs, requested)
    pager = Pager.of(ctx.page_key, f"ec2:{result_key}", ctx.region, ctx.account_id, params)
    chunk, token = page(listing, select(listing, docs, params), params, pager)
    # Keys starting with "_" carry what only filters need; they are not part of the answer.
    shown = [{key: value for key, value in doc.items() if not key.startswith("_")} for doc in chunk]
    result: dict[str, Any] = {result_key: shown}
    if token is not None:
        result["NextToken"] = token
    return result
