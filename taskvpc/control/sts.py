"""STS: GetCallerIdentity, the new user's first check that the credentials work."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.manifest import ServiceManifest


def get_caller_identity(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    principal = ctx.principal
    return {"UserId": principal.user_id, "Account": principal.account_id, "Arn": principal.arn}


MANIFEST = ServiceManifest(
    model="sts",
    signing_name="sts",
    protocol="query",
    regional=False,  # a global service: answering who you are needs no VPC
    handlers={"GetCallerIdentity": get_caller_identity},
)
