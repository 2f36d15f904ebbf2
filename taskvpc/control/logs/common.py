"""What the Logs use cases share: errors with AWS's texts, ARNs, finding a group or a stream."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.domain.errors import ClientError
from taskvpc.domain.logs_events import invalid_parameter
from taskvpc.domain.pagination import PAGING_MEMBERS
from taskvpc.store import logs_repo

# Texts as the Logs API answers them (botocore docs examples; moto's logs backend, which mirrors them).
GROUP_NOT_FOUND = "The specified log group does not exist."
STREAM_NOT_FOUND = "The specified log stream does not exist."


def not_found(message: str) -> ClientError:
    return ClientError("ResourceNotFoundException", message)


def already_exists(message: str) -> ClientError:
    return ClientError("ResourceAlreadyExistsException", message)


def group_arn(ctx: RequestContext, name: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{name}"


def stream_arn(ctx: RequestContext, group: str, stream: str) -> str:
    return f"{group_arn(ctx, group)}:log-stream:{stream}"


def now_ms(ctx: RequestContext) -> int:
    return int(ctx.now * 1000)


def group_name_of(params: dict[str, Any], *, required: bool = True) -> str | None:
    """``logGroupName`` or ``logGroupIdentifier`` (a name or an ARN), never both."""
    name, identifier = params.get("logGroupName"), params.get("logGroupIdentifier")
    if name is not None and identifier is not None:
        raise invalid_parameter("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if identifier is not None:
        if identifier.startswith("arn:"):
            rest = identifier.split(":log-group:", 1)
            if len(rest) != 2 or not rest[1]:
                raise invalid_parameter(f"Invalid log group identifier: {identifier}")  # unconfirmed
            return str(rest[1]).removesuffix(":*")
        return str(identifier)
    if name is None and required:
        raise invalid_parameter("Either logGroupName or logGroupIdentifier must be specified.")  # unconfirmed
    return None if name is None else str(name)


def require_group(conn: Connection, ctx: RequestContext, name: str) -> dict[str, Any]:
    group = logs_repo.get_group(conn, ctx.region, name)
    if group is None:
        raise not_found(GROUP_NOT_FOUND)
    return group


def require_stream(conn: Connection, group: dict[str, Any], name: str) -> dict[str, Any]:
    stream = logs_repo.get_stream(conn, group["id"], name)
    if stream is None:
        raise not_found(STREAM_NOT_FOUND)
    return stream


# ``limit`` sizes a page of a Logs listing; a later page may ask for another size.
LOGS_PAGING = PAGING_MEMBERS | {"limit"}
