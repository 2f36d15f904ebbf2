"""The awslogs driver's control-plane half: the ``logEvents`` of an agent's report into CloudWatch Logs.

Each :class:`~taskvpc.agentapi.logdriver.LogDelivery` is one task container's events; it is handled in a
transaction of its own (never under the report's cluster lock):

1. The task must be on the reporting instance and the container must use ``awslogs``; group, region and
   stream come from the task's own container definition (an agent cannot write anywhere else): the stream
   the agent names must be ``prefix/container-name/task-id`` when the definition has a prefix.
2. With an ``executionRoleArn`` the role must trust ``ecs-tasks.amazonaws.com`` and its policies must
   allow ``logs:CreateLogGroup`` (only when the group is created), ``logs:CreateLogStream`` and
   ``logs:PutLogEvents``, as ECS's agent needs with the role's credentials; without a role, the
   instance's own permissions (the agent's: unrestricted) apply, as on EC2.
3. The group must exist, or is created with ``awslogs-create-group``; the stream is created when missing.
4. The container's cursor (``store/awslogs_repo.py``, read FOR UPDATE) holds the next event number. Events
   numbered below it are already stored and skipped; the rest are stored and the cursor moves past them
   in the same transaction. The answer's ``next`` is that cursor: the agent saves its position only up to
   it, so a batch re-sent after a crash is never stored twice and nothing acknowledged is ever lost.

Refusals are acks with an error (``ResourceNotFoundException``, ``AccessDeniedException``,
``InvalidParameterException``): the agent fails the task when opening the stream, or drops the batch later,
as Docker's driver would log and drop it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from taskvpc.agentapi.logdriver import LogAck, LogConfiguration, LogDelivery, LogOptionError, awslogs_options
from taskvpc.control.context import RequestContext
from taskvpc.control.iam.credentials import principal_policies
from taskvpc.control.iam.enforce import denial
from taskvpc.control.iam.task_trust import trusted_task_role, unable_to_assume_message
from taskvpc.control.logs.common import GROUP_NOT_FOUND, group_arn, not_found, now_ms, stream_arn
from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.evaluate import Decision, Request, evaluate
from taskvpc.domain.logs_events import check_group_name, invalid_parameter
from taskvpc.domain.regions import is_region
from taskvpc.store import awslogs_repo, logs_repo, tasks_repo

_STREAM_NAME = re.compile(r"[^:*]{1,512}")


def deliver(ctx: RequestContext, instance_id: str, deliveries: Sequence[LogDelivery]) -> list[LogAck]:
    acks = []
    for item in deliveries:
        try:
            acks.append(_deliver_with_retry(ctx, instance_id, item))
        except ClientError as error:
            acks.append(LogAck(item.task_arn, item.container, item.first, error.code, error.message))
    return acks


def _deliver_with_retry(ctx: RequestContext, instance_id: str, item: LogDelivery) -> LogAck:
    for _ in range(2):
        try:
            return _deliver(ctx, instance_id, item)
        except IntegrityError:  # another container of the task created the same group or stream first
            continue
    return _deliver(ctx, instance_id, item)


def _container(task: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in task["spec"].get("containers") or []:
        if container.get("name") == name:
            return dict(container)
    raise invalid_parameter(f"The task has no container {name}.")


def _deliver(ctx: RequestContext, instance_id: str, item: LogDelivery) -> LogAck:
    with ctx.db.transaction() as conn:
        found = tasks_repo.get_tasks_by_arn(conn, [item.task_arn])
        task = found[0] if found else None
        if task is None or task["container_instance_id"] != instance_id:
            raise not_found("The task is not on this container instance.")
        config = LogConfiguration.from_wire(_container(task, item.container).get("logConfiguration"))
        if config is None or config.driver != "awslogs":
            raise invalid_parameter(f"Container {item.container} does not use the awslogs log driver.")
        try:
            options = awslogs_options(config)
        except LogOptionError as exc:
            raise invalid_parameter(str(exc)) from None
        task_id = item.task_arn.rsplit("/", 1)[-1]
        expected = options.stream_name(item.container, task_id, item.stream)
        if item.stream != expected or not _STREAM_NAME.fullmatch(item.stream):
            raise invalid_parameter(f"The log stream of container {item.container} is {expected}.")
        region = options.region or ctx.region
        if not is_region(region):
            raise invalid_parameter(
                f"Unknown awslogs-region {region}."
            )  # unconfirmed (Docker cannot connect)
        check_group_name(options.group)
        here = replace(ctx, region=region)
        role = task["spec"].get("executionRoleArn")
        permit = _RolePermissions(conn, here, role, item.task_arn) if role else None

        group = logs_repo.get_group(conn, region, options.group)
        if group is None:
            if not options.create_group:
                raise not_found(GROUP_NOT_FOUND)
            if permit:
                permit.check("logs:CreateLogGroup", group_arn(here, options.group))
            group = _create_group(conn, here, options.group)
        stream = logs_repo.get_stream(conn, group["id"], item.stream)
        if stream is None:
            if permit:
                permit.check("logs:CreateLogStream", group_arn(here, options.group))
            stream_id = logs_repo.insert_stream(conn, group["id"], item.stream, now_ms(ctx))
        else:
            stream_id = stream["id"]

        stored = awslogs_repo.next_seq(conn, item.task_arn, item.container, lock=True)
        current = stored or 0
        fresh = list(item.events[max(0, current - item.first) :])
        if fresh:
            if permit:
                permit.check("logs:PutLogEvents", stream_arn(here, options.group, item.stream))
            logs_repo.put_events(conn, group["id"], stream_id, fresh, now_ms(ctx))
        upto = max(current, item.first + len(item.events))
        if stored is None or upto != stored:
            awslogs_repo.set_next_seq(conn, item.task_arn, item.container, upto, exists=stored is not None)
        return LogAck(item.task_arn, item.container, upto)


def _create_group(conn: Connection, ctx: RequestContext, name: str) -> dict[str, Any]:
    values = {
        "region": ctx.region,
        "name": name,
        "arn": group_arn(ctx, name),
        "created_at": now_ms(ctx),
        "retention_days": None,
        "kms_key_id": None,
        "log_group_class": "STANDARD",
    }
    group_id = logs_repo.insert_group(conn, values)
    return {**values, "id": group_id}


class _RolePermissions:
    """The task execution role, as ECS's agent would use it for awslogs: assumed by ecs-tasks on the
    task's behalf (its trust policy decides), then its identity policies decide each logs call."""

    def __init__(self, conn: Connection, ctx: RequestContext, role_arn: str, task_arn: str) -> None:
        self.ctx, self.role_arn, self.task_arn = ctx, role_arn, task_arn
        role = trusted_task_role(conn, ctx.account_id, role_arn, task_arn)
        if role is None:
            raise ClientError("AccessDeniedException", unable_to_assume_message(role_arn))
        self.name = str(role["RoleName"])
        self.policies = principal_policies(conn, ctx.account_id, "role", self.name)
        task_id = task_arn.rsplit("/", 1)[-1]
        self.principal = f"arn:aws:sts::{ctx.account_id}:assumed-role/{self.name}/{task_id}"

    def check(self, action: str, resource: str) -> None:
        context = {
            "aws:principalarn": [f"arn:aws:iam::{self.ctx.account_id}:role/{self.name}"],
            "aws:principalaccount": [self.ctx.account_id],
            "aws:principaltype": ["AssumedRole"],
            "aws:requestedregion": [self.ctx.region],
            "aws:securetransport": ["false"],
        }
        decision = evaluate(self.policies, Request(action, resource, context))
        if decision is not Decision.ALLOW:
            raise denial("json", self.principal, action, resource, decision, False)
