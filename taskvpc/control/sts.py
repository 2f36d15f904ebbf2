"""STS GetCallerIdentity: the new user's first check that the credentials work."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext


def get_caller_identity(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"UserId": ctx.account_id, "Account": ctx.account_id, "Arn": ctx.principal_arn}
