"""STS: who am I (GetCallerIdentity), and temporary credentials (AssumeRole, GetSessionToken), plus the
task-role credentials ECS hands its tasks (``vend_task_credentials``, for the agent API).

Temporary credentials are an ``ASIA...`` key, a secret and an opaque session token, kept in the store
(``sts_sessions``) with the principal they act as and their session policies; SigV4 checks the token
and the expiry (taskvpc.control.iam.credentials resolves them).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.iam.common import new_secret, unique_id
from taskvpc.control.iam.credentials import Grants, principal_policies
from taskvpc.control.iam.enforce import request_context
from taskvpc.control.iam.policies import policy_document
from taskvpc.control.iam.task_trust import trusted_task_role, unable_to_assume_message
from taskvpc.control.identity import Principal
from taskvpc.control.manifest import ServiceManifest
from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.document import parse_policy
from taskvpc.domain.iam.evaluate import Caller, Request, may_assume
from taskvpc.store import iam_repo

SESSION_POLICY_MAX_CHARS = 2048
CHAINED_MAX_SECONDS = 3600
TASK_CREDENTIALS_SECONDS = 6 * 3600  # ECS task-role credentials last hours and are rotated before expiry


def get_caller_identity(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    principal = ctx.principal
    return {"UserId": principal.user_id, "Account": principal.account_id, "Arn": principal.arn}


def _caller_kind(ctx: RequestContext) -> tuple[str, str]:
    """("root" | "user" | "role", name) of the calling principal, from its ARN."""
    resource = ctx.principal.arn.split(":", 5)[5]
    if resource == "root":
        return "root", ""
    if resource.startswith("user/"):
        return "user", resource.rsplit("/", 1)[1]
    return "role", resource.split("/")[1]


def _issue(
    conn: Connection,
    ctx: RequestContext,
    principal: Principal,
    kind: str,
    name: str,
    seconds: int,
    session_policies: list[str] | None,
) -> dict[str, Any]:
    key_id, secret = unique_id("ASIA", 16), new_secret()
    token = "FwoGZXIvYXdzE" + secrets.token_urlsafe(96)
    expires_at = float(int(ctx.now) + seconds)
    body = {
        "principal": {"arn": principal.arn, "user_id": principal.user_id, "account_id": principal.account_id},
        "kind": kind,
        "name": name,
        "session_policies": session_policies,
        "issued_at": ctx.now,
    }
    iam_repo.put_session(conn, key_id, secret, token, expires_at, body)
    return {"AccessKeyId": key_id, "SecretAccessKey": secret, "SessionToken": token, "Expiration": expires_at}


def _not_authorized(ctx: RequestContext, role_arn: str) -> ClientError:
    return ClientError(
        "AccessDenied",
        f"User: {ctx.principal.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        403,
    )


def _session_policies(conn: Connection, ctx: RequestContext, params: dict[str, Any]) -> list[str] | None:
    texts: list[str] = []
    if (inline := params.get("Policy")) is not None:
        if len("".join(inline.split())) > SESSION_POLICY_MAX_CHARS:
            raise ClientError(
                "PackedPolicyTooLarge", "Packed policy consumes more than 100% of allotted space", 400
            )
        parse_policy(inline)
        texts.append(inline)
    for item in params.get("PolicyArns") or []:
        text = policy_document(conn, ctx.account_id, item["arn"])
        if text is None:
            raise ClientError("InvalidParameterValue", f"Policy {item['arn']} does not exist.", 400)
        texts.append(text)
    return texts if ("Policy" in params or params.get("PolicyArns")) else None


def assume_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    role_arn, session_name = params["RoleArn"], params["RoleSessionName"]
    kind, caller_name = _caller_kind(ctx)
    with ctx.db.transaction() as conn:
        found = iam_repo.get_entity_by_arn(conn, role_arn)
        if found is None or found[0] != "role":
            raise _not_authorized(ctx, role_arn)
        role = found[1]
        trust = parse_policy(role["AssumeRolePolicyDocument"], "trust")
        grants = Grants(kind, caller_name, (), None)
        context = request_context(ctx, grants) if kind != "root" else {}
        if params.get("ExternalId") is not None:
            context["sts:externalid"] = [params["ExternalId"]]
        request = Request("sts:AssumeRole", role_arn, context)
        identity = None if kind == "root" else principal_policies(conn, ctx.account_id, kind, caller_name)
        if not may_assume(trust, Caller(ctx.account_id, ctx.principal.arn), request, identity):
            raise _not_authorized(ctx, role_arn)
        seconds = params.get("DurationSeconds", 3600)
        if kind == "role" and seconds > CHAINED_MAX_SECONDS:
            raise ClientError(
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
                400,
            )
        if seconds > role["MaxSessionDuration"]:
            raise ClientError(
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
                400,
            )
        policies = _session_policies(conn, ctx, params)
        principal = Principal.assumed_role(ctx.account_id, role["RoleName"], session_name, role["RoleId"])
        credentials = _issue(conn, ctx, principal, "role", role["RoleName"], seconds, policies)
    return {
        "Credentials": credentials,
        "AssumedRoleUser": {"AssumedRoleId": principal.user_id, "Arn": principal.arn},
        "PackedPolicySize": 0 if policies is None else min(100, 6 * len("".join(policies)) // 100),
    }


def get_session_token(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    kind, name = _caller_kind(ctx)
    if kind == "role":
        raise ClientError("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    seconds = params.get("DurationSeconds", 43200)
    if kind == "root" and seconds > 3600:
        seconds = 3600  # the root user's sessions last at most an hour
    with ctx.db.transaction() as conn:
        credentials = _issue(conn, ctx, ctx.principal, kind, name, seconds, None)
    return {"Credentials": credentials}


def vend_task_credentials(
    ctx: RequestContext,
    task_arn: str,
    role_arn: str,
    seconds: int = TASK_CREDENTIALS_SECONDS,
    *,
    conn: Connection | None = None,
) -> tuple[str, str, str, float]:
    """Credentials for a task's role, as ECS assumes it on the task's behalf: the role's trust policy must
    allow the service ``ecs-tasks.amazonaws.com`` (with aws:SourceAccount and aws:SourceArn = the task),
    and the session is ``assumed-role/<role>/<task id>``. Written with ``conn`` when given (the caller's
    open transaction: the agent's desired-state answer holds the write lock already), else in a
    transaction of its own. -> (AccessKeyId, SecretAccessKey, Token, Expiration as epoch seconds)."""
    if conn is None:
        with ctx.db.transaction() as own:
            return _vend_task_credentials(own, ctx, task_arn, role_arn, seconds)
    return _vend_task_credentials(conn, ctx, task_arn, role_arn, seconds)


def _vend_task_credentials(
    conn: Connection, ctx: RequestContext, task_arn: str, role_arn: str, seconds: int
) -> tuple[str, str, str, float]:
    task_id = task_arn.rsplit("/", 1)[-1]
    role = trusted_task_role(conn, ctx.account_id, role_arn, task_arn)
    if role is None:
        raise ClientError("ClientException", unable_to_assume_message(role_arn), 400)
    principal = Principal.assumed_role(ctx.account_id, role["RoleName"], task_id, role["RoleId"])
    issued = _issue(conn, ctx, principal, "role", role["RoleName"], seconds, None)
    return issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"], issued["Expiration"]


MANIFEST = ServiceManifest(
    model="sts",
    signing_name="sts",
    protocol="query",
    regional=False,  # a global service: answering who you are needs no VPC
    handlers={
        "GetCallerIdentity": get_caller_identity,
        "AssumeRole": assume_role,
        "GetSessionToken": get_session_token,
    },
)
