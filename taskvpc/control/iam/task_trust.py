"""Whether ECS may assume a role on a task's behalf: the role must exist and its trust policy must let
``ecs-tasks.amazonaws.com`` assume it, with ``aws:SourceAccount`` the account and ``aws:SourceArn`` the
task. One check for both moments ECS makes it: at launch (:mod:`taskvpc.control.ecs.task_roles`) and when
the agent asks for the task's credentials (:func:`taskvpc.control.sts.vend_task_credentials`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.domain.iam.document import parse_policy
from taskvpc.domain.iam.evaluate import Caller, Request, may_assume
from taskvpc.store import iam_repo

ECS_TASKS = "ecs-tasks.amazonaws.com"


def trusted_task_role(
    conn: Connection, account_id: str, role_arn: str, task_arn: str
) -> dict[str, Any] | None:
    """The role's record when ECS may assume it for ``task_arn``, else None (no such role, or no trust)."""
    found = iam_repo.get_entity_by_arn(conn, role_arn)
    if found is None or found[0] != "role":
        return None
    role = found[1]
    context = {"aws:sourceaccount": [account_id], "aws:sourcearn": [task_arn]}
    trusted = may_assume(
        parse_policy(role["AssumeRolePolicyDocument"], "trust"),
        Caller(account_id, service=ECS_TASKS),
        Request("sts:AssumeRole", role_arn, context),
        None,
    )
    return dict(role) if trusted else None


def unable_to_assume_message(role_arn: str) -> str:
    # real text (ECS's service events and RunTask errors quoted in public issues, e.g.
    # aws-samples/aws-modern-application-workshop#88, boto/boto3#1878)
    return (
        f"ECS was unable to assume the role '{role_arn}' that was provided for this task. Please verify "
        "that the role being passed has the proper trust relationship and permissions and that your IAM "
        "user has permissions to pass this role."
    )
