"""Launch-time check of a task's roles: ECS refuses to start a task whose task or execution role it could
not assume. RunTask and StartTask answer InvalidParameterException; a service is created or updated all
the same and each of its launches fails with the service event "failed to launch a task with (error ...)".

The check is the trust half of what STS's ``vend_task_credentials`` does when the agent asks for the
task's credentials: the role must exist and its trust policy must let ``ecs-tasks.amazonaws.com`` assume
it, with ``aws:SourceAccount`` the account and ``aws:SourceArn`` a task ARN of the cluster (the task's own
id is not known yet, so a placeholder one). Nothing is issued or written. A role deleted or changed after
launch is still the runtime path's business: that task's credentials endpoint answers 503 and the vendor
is asked again later (:mod:`taskvpc.control.task_credentials`).

Only when the vendor is STS's own: with no vendor a task with a role is not placed at all, and another
vendor's roles need not live in this IAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from taskvpc.control import task_credentials
from taskvpc.control.context import RequestContext
from taskvpc.control.iam.task_trust import trusted_task_role, unable_to_assume_message
from taskvpc.domain.arns import task_arn
from taskvpc.domain.errors import ClientError, invalid_parameter

_PLACEHOLDER_TASK_ID = "0" * 32  # the shape of a task id; the real one is chosen after this check


def unable_to_assume(role_arn: str) -> ClientError:
    return invalid_parameter(unable_to_assume_message(role_arn))


def roles_of(td: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """The task and execution roles a launch gives its task (an override wins, as in the task's spec)."""
    found = [
        overrides.get("taskRoleArn") or td.get("taskRoleArn"),
        overrides.get("executionRoleArn") or td.get("executionRoleArn"),
    ]
    return [r for r in dict.fromkeys(found) if isinstance(r, str) and r]


def ecs_may_assume(conn: Connection, ctx: RequestContext, role_arn: str, cluster_name: str) -> bool:
    """Whether ECS could assume ``role_arn`` for a task of ``cluster_name`` (trust policy only)."""
    source = task_arn(ctx.region, ctx.account_id, cluster_name, _PLACEHOLDER_TASK_ID)
    return trusted_task_role(conn, ctx.account_id, role_arn, source) is not None


def _checked_here() -> bool:
    from taskvpc.control.sts import vend_task_credentials  # the vendor whose roles live in our IAM

    return task_credentials.vendor() is vend_task_credentials


def check_task_roles(
    conn: Connection,
    ctx: RequestContext,
    cluster_name: str,
    td: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Raise ECS's InvalidParameterException for the first role of the launch ECS could not assume."""
    roles = roles_of(td, overrides or {})
    if not roles or not _checked_here():
        return
    for role_arn in roles:
        if not ecs_may_assume(conn, ctx, role_arn, cluster_name):
            raise unable_to_assume(role_arn)
