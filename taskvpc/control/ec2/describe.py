"""What every EC2 ``Describe*`` does the same way: ids, filters, pagination, ``DryRun``.

EC2's order, which we keep: malformed ids are refused first, then unknown filter names, then ``DryRun``
answers; then the resources are read, every explicitly named id must exist (one missing fails the whole
call), filters narrow the set, and ``MaxResults``/``NextToken`` page through it in id order. A token is
the last id returned, so pages stay stable while resources come and go.

A listing costs its page, not the store (:func:`run`): the page is read in id order from a (region, id)
or (region, column, id) index with ``LIMIT`` and the token's id as the key to start after; filters on a
column or a tag become SQL, wildcards included (``ec2_repo.Match``). Only the page's rows get their
views (rules, tags) read. Filters SQL cannot apply (a group's rules, say) read the listing in batches
until the page is full. The Python filters still run over every row SQL returns: SQL only narrows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import errors, ids
from taskvpc.domain.pagination import Pager, is_str
from taskvpc.netmodel import filters
from taskvpc.store import ec2_repo
from taskvpc.wire.query import dry_run_error

Doc = dict[str, Any]
View = Callable[[Connection, list[Doc]], list[Doc]]
# Rows read per round when some filter can only be applied in Python: enough that a sparse filter needs
# few rounds, few enough that one round's views (rules, tags) stay cheap.
BATCH = 500


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
    table: str = ""  # the store's table of the resource ('security_groups')
    # Filters on one column's value ('vpc-id' -> 'vpc_id'): these (and tag filters) become SQL.
    columns: Mapping[str, str] = field(default_factory=dict)
    # Columns a list of exact values selects few rows of (ids, names).
    bounded_columns: Collection[str] = ("id",)


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


def _limit(params: Mapping[str, Any]) -> int | None:
    limit = params.get("MaxResults")
    if limit is not None and limit < 1:  # where the model sets no minimum, the listing does
        # unconfirmed: EC2's exact text for a MaxResults below 1 on listings without a model minimum
        raise errors.invalid_parameter_value(
            f"Value ( {limit} ) for parameter maxResults is invalid. Parameter must be greater than 0."
        )
    return int(limit) if limit is not None else None


def page(
    listing: Listing, docs: list[Doc], params: Mapping[str, Any], pager: Pager
) -> tuple[list[Doc], str | None]:
    """One page in id order, and the token for the next (None when this is the last)."""
    token = params.get("NextToken")
    after = pager.decode(token, errors.invalid_next_token(str(token)), is_str)
    ordered = sorted(docs, key=lambda doc: str(doc[listing.id_member]))
    if after is not None:
        ordered = [doc for doc in ordered if doc[listing.id_member] > after]
    limit = _limit(params)
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
    pager = _pager(ctx, params, result_key)
    chunk, token = page(listing, select(listing, docs, params), params, pager)
    return _answer(chunk, token, result_key)


def _pager(ctx: RequestContext, params: Mapping[str, Any], result_key: str) -> Pager:
    return Pager.of(ctx.page_key, f"ec2:{result_key}", ctx.region, ctx.account_id, params)


def _answer(chunk: list[Doc], token: str | None, result_key: str) -> dict[str, Any]:
    # Keys starting with "_" carry what only filters need; they are not part of the answer.
    shown = [{key: value for key, value in doc.items() if not key.startswith("_")} for doc in chunk]
    result: dict[str, Any] = {result_key: shown}
    if token is not None:
        result["NextToken"] = token
    return result


def sql_pattern(value: str) -> ec2_repo.Pattern:
    """An EC2 filter value as the store's pattern: ``*``/``?`` wildcards, ``\\*``, ``\\?``, ``\\\\`` literal
    (the meaning ``taskvpc.netmodel.filters`` gives them)."""
    chunks: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            literal.append(value[i + 1])
            i += 2
            continue
        if c in "*?":
            if literal:
                chunks.append("=" + "".join(literal))
                literal = []
            chunks.append(c)
        else:
            literal.append(c)
        i += 1
    if literal:
        chunks.append("=" + "".join(literal))
    return tuple(chunks)


def sql_filters(
    listing: Listing, wanted: Sequence[Mapping[str, Any]]
) -> tuple[list[ec2_repo.Match], bool, bool]:
    """(the filters SQL applies, whether that is all of them, whether they select few rows). The Python
    filters still run over what SQL returns, so SQL only ever narrows."""
    matches: list[ec2_repo.Match] = []
    complete = True
    bounded = False
    for wanted_filter in wanted:
        name = str(wanted_filter.get("Name", ""))
        patterns = [sql_pattern(str(v)) for v in wanted_filter.get("Values") or ()]
        if name in listing.columns:
            column = listing.columns[name]
            matches.append(ec2_repo.Match(column, patterns))
            # a list of exact ids or names: few rows, read by their own index
            bounded |= column in listing.bounded_columns and all(
                all(chunk.startswith("=") for chunk in p) for p in patterns
            )
        elif (name.startswith("tag:") and len(name) > 4) or name in filters.TAG_FILTERS:
            matches.append(ec2_repo.Match(name, patterns))
        else:
            complete = False
    return matches, complete, bounded


def run(
    ctx: RequestContext,
    listing: Listing,
    params: Mapping[str, Any],
    requested: list[str] | None,
    result_key: str,
    view: View,
) -> dict[str, Any]:
    """A whole Describe* after :func:`check_request`: named ids are read as they are (all must exist);
    otherwise one page is read from the store in id order, filtered, with the token of the next."""
    if requested is not None:
        with ctx.db.read() as conn:
            docs = view(
                conn, ec2_repo.page(conn, listing.table, ctx.region, ec2_repo.PageQuery(ids=requested))
            )
        return respond(ctx, listing, docs, params, requested, result_key)
    pager = _pager(ctx, params, result_key)
    token = params.get("NextToken")
    after = pager.decode(token, errors.invalid_next_token(str(token)), is_str)
    limit = _limit(params)
    matches, complete, bounded = sql_filters(listing, params.get("Filters") or ())
    # Without MaxResults EC2 answers with everything; with only SQL filters one more row than the page
    # tells whether there is a next page; a bounded read is whole at once.
    batch = None if limit is None else limit + 1 if complete else max(limit + 1, BATCH)
    found: list[Doc] = []
    with ctx.db.read() as conn:
        while True:
            query = ec2_repo.PageQuery(
                matches=matches, after=after, limit=None if bounded else batch, bounded=bounded
            )
            rows = ec2_repo.page(conn, listing.table, ctx.region, query)
            if rows:
                after = rows[-1][listing.id_member]
                found += select(listing, view(conn, rows), params)
            if bounded or batch is None or len(rows) < batch or (limit is not None and len(found) > limit):
                break
    if limit is None or len(found) <= limit:
        return _answer(found, None, result_key)
    chunk = found[:limit]
    return _answer(chunk, pager.encode(chunk[-1][listing.id_member]), result_key)
