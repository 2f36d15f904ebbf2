"""Policies enforced on every request: the one authorization step the API layer runs before a handler.

The action is ``<signing name>:<Operation>`` (the signing names of the services taskvpc serves are their
IAM prefixes: ecs, ec2, elasticloadbalancing, sts, iam). The resource is the ARN the operation acts on
where ``resource_arn`` computes it - ECS cluster operations, IAM users/roles/policies (with the request's
Path, or ``/``: an existing entity's path is not looked up), sts:AssumeRole, EC2 operations on one VPC,
subnet or security group - and ``*`` for every other operation (list and
describe calls, and operations whose ARN is not computed yet). ECS also checks ``iam:PassRole`` for the
roles a task definition names, when it is registered and when it is launched (``passed_roles``).
Denials answer in each protocol's shape with AWS's wording.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.iam.credentials import Grants
from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.evaluate import Decision, Request, evaluate

# Operations every principal may call whatever its policies say: GetCallerIdentity needs no permission
# and cannot be denied; IAM users need no permission for GetSessionToken (IAM User Guide, "Permissions for
# GetSessionToken").
ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity", "sts:GetSessionToken"})
# Decided by the handler itself: AssumeRole weighs the role's trust policy with the caller's policies.
DECIDED_BY_HANDLER = frozenset({"sts:AssumeRole"})


def _name(value: str) -> str:
    return value.rsplit("/", 1)[-1]


def _ecs_cluster(ctx: RequestContext, params: dict[str, Any]) -> str:
    cluster = params.get("clusterName") or params.get("cluster") or "default"
    if str(cluster).startswith("arn:"):
        return str(cluster)
    return f"arn:aws:ecs:{ctx.region}:{ctx.account_id}:cluster/{cluster}"


def _iam(kind: str, field: str) -> Callable[[RequestContext, dict[str, Any]], str]:
    def arn(ctx: RequestContext, params: dict[str, Any]) -> str:
        value = params.get(field)
        if not value:
            return "*"
        path = params.get("Path", "/")  # an existing entity's own path is not looked up (see above)
        return f"arn:aws:iam::{ctx.account_id}:{kind}{path}{value}"

    return arn


def _ec2(kind: str, field: str) -> Callable[[RequestContext, dict[str, Any]], str]:
    def arn(ctx: RequestContext, params: dict[str, Any]) -> str:
        value = params.get(field)
        return f"arn:aws:ec2:{ctx.region}:{ctx.account_id}:{kind}/{value}" if value else "*"

    return arn


_ECS_CLUSTER_OPERATIONS = {
    "CreateCluster",
    "DeleteCluster",
    "UpdateCluster",
    "UpdateClusterSettings",
    "PutClusterCapacityProviders",
    "RunTask",
    "StartTask",
    "ListTasks",
    "ListServices",
    "ListContainerInstances",
    "CreateService",
    "RegisterContainerInstance",
    "DescribeTasks",
    "DescribeServices",
    "DescribeContainerInstances",
}


def resource_arn(service: str, operation: str, ctx: RequestContext, params: dict[str, Any]) -> str:
    """The ARN ``operation`` acts on, or ``*`` (see the module docstring for which are computed)."""
    if service == "ecs" and operation in _ECS_CLUSTER_OPERATIONS:
        return _ecs_cluster(ctx, params)
    if service == "iam":
        if "PolicyArn" in params:
            return str(params["PolicyArn"])
        if operation == "CreatePolicy":
            return _iam("policy", "PolicyName")(ctx, params)
        if "RoleName" in params:
            return _iam("role", "RoleName")(ctx, params)
        if "UserName" in params:
            return _iam("user", "UserName")(ctx, params)
        if operation in ("CreateAccessKey", "ListAccessKeys", "GetUser") and ":user/" in ctx.principal.arn:
            return ctx.principal.arn
        return "*"
    if service == "sts" and operation == "AssumeRole":
        return str(params.get("RoleArn", "*"))
    if service == "ec2":
        for field, kind in (("GroupId", "security-group"), ("SubnetId", "subnet"), ("VpcId", "vpc")):
            if isinstance(params.get(field), str):
                return _ec2(kind, field)(ctx, params)
    return "*"


@lru_cache(maxsize=64)
def _iso_time(epoch_second: int) -> str:
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_context(ctx: RequestContext, grants: Grants) -> dict[str, list[str]]:
    """The global condition keys of a request (lower-cased names)."""
    principal = ctx.principal
    keys = {
        "aws:principalarn": [principal.arn],
        "aws:principalaccount": [principal.account_id],
        "aws:userid": [principal.user_id],
        "aws:principaltype": ["User" if grants.kind == "user" else "AssumedRole"],
        "aws:currenttime": [_iso_time(int(ctx.now))],
        "aws:epochtime": [str(int(ctx.now))],
        "aws:requestedregion": [ctx.region],
        "aws:securetransport": ["false"],
        "aws:multifactorauthpresent": ["false"],
    }
    if grants.kind == "user":
        keys["aws:username"] = [grants.name]
    if grants.issued_at is not None:
        keys["aws:tokenissuetime"] = [_iso_time(int(grants.issued_at))]
    return keys


class _LazyContext(Mapping[str, Sequence[str]]):
    """The request context, built on first use: most requests meet no condition and no policy variable
    in the statements that match their action, and then never need it."""

    def __init__(self, build: Callable[[], dict[str, list[str]]]) -> None:
        self._build = build
        self._keys: dict[str, list[str]] | None = None

    def _all(self) -> dict[str, list[str]]:
        if self._keys is None:
            self._keys = self._build()
        return self._keys

    def __getitem__(self, key: str) -> Sequence[str]:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def denial(
    protocol: str, principal_arn: str, action: str, resource: str, decision: Decision, session: bool
) -> ClientError:
    """AWS's AccessDenied for ``protocol`` (json: ECS, ec2: EC2, query: IAM, STS, ELBv2)."""
    if decision is Decision.EXPLICIT_DENY:
        reason = "with an explicit deny in an identity-based policy"
    elif session:
        reason = f"because no session policy allows the {action} action"
    else:
        reason = f"because no identity-based policy allows the {action} action"
    text = f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource} {reason}"
    if protocol == "json":
        return ClientError("AccessDeniedException", text, 400)
    if protocol == "ec2":
        return ClientError(
            "UnauthorizedOperation", f"You are not authorized to perform this operation. {text}", 403
        )
    return ClientError("AccessDenied", text, 403)


def check(
    ctx: RequestContext,
    grants: Grants,
    protocol: str,
    action: str,
    resource: str,
    extra: dict[str, list[str]] | None = None,
) -> None:
    """Raise the protocol's AccessDenied unless ``grants`` allow ``action`` on ``resource``."""
    if grants.unrestricted or action in ALWAYS_ALLOWED:
        return

    def build() -> dict[str, list[str]]:
        return request_context(ctx, grants) | (extra or {})

    request = Request(action, resource, _LazyContext(build))
    decision = evaluate(grants.identity, request, grants.session)
    if decision is Decision.ALLOW:
        return
    session_only = grants.session is not None and evaluate(grants.identity, request) is Decision.ALLOW
    raise denial(protocol, ctx.principal.arn, action, resource, decision, session_only)


def authorize(
    ctx: RequestContext, grants: Grants, service: str, protocol: str, operation: str, params: dict[str, Any]
) -> None:
    """The authorization step for one decoded request (the API layer's, before the handler runs)."""
    if grants.unrestricted or f"{service}:{operation}" in DECIDED_BY_HANDLER:
        return
    if service == "sts" and operation == "GetSessionToken" and grants.issued_at is not None:
        # Temporary credentials cannot mint more, whatever their policies say.
        raise ClientError("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    check(ctx, grants, protocol, f"{service}:{operation}", resource_arn(service, operation, ctx, params))
    if service == "ecs":
        for role, to_service in passed_roles(ctx, operation, params):
            check(ctx, grants, protocol, "iam:PassRole", role, {"iam:passedtoservice": [to_service]})


# ECS operations that hand a task definition's roles to ECS (the caller must be allowed to pass them).
_LAUNCHES = frozenset({"RunTask", "StartTask", "CreateService", "UpdateService"})


def passed_roles(ctx: RequestContext, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(role ARN, service it is passed to) of each role an ECS request passes: a task definition's task
    and execution roles when it is registered or launched (RunTask, StartTask, CreateService,
    UpdateService; its stored revision is read), their overrides, and a service's load-balancer role."""
    from taskvpc.control.ecs.task_definitions import find_task_definition  # beside us in control

    found: list[object] = []
    if operation == "RegisterTaskDefinition":
        found += [params.get("taskRoleArn"), params.get("executionRoleArn")]
    if operation in _LAUNCHES and isinstance(params.get("taskDefinition"), str):
        try:
            with ctx.db.read() as conn:
                taskdef = find_task_definition(conn, ctx, params["taskDefinition"])
        except ClientError:
            taskdef = None  # a malformed identifier: the handler answers it
        if taskdef is not None:
            found += [taskdef.get("taskRoleArn"), taskdef.get("executionRoleArn")]
    overrides = params.get("overrides")
    if isinstance(overrides, dict):
        found += [overrides.get("taskRoleArn"), overrides.get("executionRoleArn")]
    roles = [(r, "ecs-tasks.amazonaws.com") for r in dict.fromkeys(found) if isinstance(r, str) and r]
    role = params.get("role") if operation == "CreateService" else None
    if isinstance(role, str) and role:  # a name means the role of that name at path /
        arn = role if role.startswith("arn:") else f"arn:aws:iam::{ctx.account_id}:role/{role}"
        roles.append((arn, "ecs.amazonaws.com"))
    return roles
