"""ECS services behind load balancers: what the ECS side calls (inside its own transaction).

* :func:`check_load_balancers` - CreateService/UpdateService ``loadBalancers`` with ECS's checks and texts;
* :func:`targets_for` / :func:`task_address` - the targets of a task: its ENI's private IP at each
  container port, one per target group;
* :func:`register` / :func:`deregister` - put them in, or start their drain, returning the service events
  ECS writes ("registered N targets in (target-group ARN)", no final period, notes §3);
* :func:`read_targets` and :func:`summarize` - what the load balancers say of one task, in the service
  planner's terms (:mod:`taskvpc.scheduler.services`): unregistered, initial, healthy, unhealthy (where
  and why) or draining. A drain ends by the clock (the group's deregistration delay), so ``now`` decides.

A task's targets are kept as plain dicts ``{"targetGroupArn", "ip", "port"}`` (JSON in the service
document), so a task is deregistered from the groups it was registered in even after the service's
``loadBalancers`` changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import retarget, target_groups, targets
from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.netmodel import elb_health
from taskvpc.scheduler import services as planner
from taskvpc.store import elbv2_repo

Doc = dict[str, Any]
TargetKey = tuple[str, str, int]  # (target group ARN, ip, port)
TargetRows = dict[TargetKey, Doc]

MAX_TARGET_GROUPS = 5  # "Target groups per service" (developer guide, service quotas)


def check_load_balancers(
    conn: Connection, ctx: RequestContext, load_balancers: list[Doc], task_definition: Doc
) -> list[Doc]:
    """The service's ``loadBalancers`` as ECS keeps them, or ECS's InvalidParameterException."""
    network_mode = task_definition.get("networkMode", "bridge")
    if len(load_balancers) > MAX_TARGET_GROUPS:
        raise invalid_parameter(
            f"loadBalancers can have at most {MAX_TARGET_GROUPS} items."
        )  # unconfirmed wording
    used = target_groups.usage(conn, ctx)
    checked = []
    for entry in load_balancers:
        if entry.get("loadBalancerName"):
            if network_mode == "awsvpc":
                # API reference, LoadBalancer: awsvpc services "only support Application Load Balancers
                # and Network Load Balancers. Classic Load Balancers are not supported." # unconfirmed text
                raise invalid_parameter(
                    "Classic Load Balancers are not supported for tasks that use the awsvpc network mode; "
                    "specify a targetGroupArn instead of a loadBalancerName."
                )
            raise ClientError(
                "UnsupportedFeatureException",
                "taskvpc serves ELBv2 target groups only (targetGroupArn), not Classic Load Balancers.",
            )
        arn = entry.get("targetGroupArn")
        if not arn:
            raise invalid_parameter("Target group arn must be specified")  # unconfirmed
        tg = elbv2_repo.get_doc(conn, "target_group", ctx.region, arn)
        if tg is None:
            # What ECS answers for a target group it cannot see (many public reports)
            raise invalid_parameter(
                "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS "
                "service role being passed has the proper permissions."
            )
        if network_mode == "awsvpc" and tg["TargetType"] != "ip":
            # [G1] riboseinc/terraform-aws-ecs-gitlab#5
            raise invalid_parameter(
                f"The provided target group {arn} has target type {tg['TargetType']}, which is incompatible with "
                "the awsvpc network mode specified in the task definition."
            )
        if network_mode in ("bridge", "host") and tg["TargetType"] == "ip":
            # [G2] terraform-provider-aws#12252
            raise invalid_parameter(
                f"The provided target group {arn} has target type ip, which is incompatible with the "
                f"{network_mode} network mode specified in the task definition."
            )
        if arn not in used:
            # [G3] hashicorp/terraform#32908
            raise invalid_parameter(
                f"The target group with targetGroupArn {arn} does not have an associated load balancer."
            )
        container_name, container_port = entry.get("containerName"), entry.get("containerPort")
        container = next(
            (c for c in task_definition.get("containerDefinitions", []) if c.get("name") == container_name),
            None,
        )
        if container is None:
            # real text (public CreateService/UpdateService outputs)
            raise invalid_parameter(f"The container {container_name} does not exist in the task definition.")
        ports = {m.get("containerPort") for m in container.get("portMappings", [])}
        if container_port not in ports:
            # real text (public CreateService/UpdateService outputs)
            raise invalid_parameter(
                f"The container {container_name} did not have a container port {container_port} defined."
            )
        if network_mode != "awsvpc":
            raise ClientError(
                "UnsupportedFeatureException",
                "taskvpc registers awsvpc tasks (target type ip) only: it has no EC2 instances to register.",
            )
        checked.append(
            {"targetGroupArn": arn, "containerName": container_name, "containerPort": container_port}
        )
    return checked


def task_address(task_body: Doc) -> str | None:
    """The private IPv4 address of a task's ENI (its attachment's details), once it has one."""
    for attachment in task_body.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def targets_for(load_balancers: list[Doc], ip: str) -> list[Doc]:
    return [
        {"targetGroupArn": lb["targetGroupArn"], "ip": ip, "port": lb["containerPort"]}
        for lb in load_balancers
    ]


def existing(conn: Connection, ctx: RequestContext, entries: list[Doc]) -> list[Doc]:
    """The entries whose target group still exists (a service outlives a deleted group: its tasks are then
    registered nowhere, and count as if the service had no load balancer there)."""
    groups = {e["targetGroupArn"] for e in entries}
    alive = {arn for arn in groups if elbv2_repo.get_doc(conn, "target_group", ctx.region, arn) is not None}
    return [e for e in entries if e["targetGroupArn"] in alive]


def _by_group(entries: Iterable[Doc]) -> dict[str, list[Doc]]:
    groups: dict[str, list[Doc]] = {}
    for entry in entries:
        groups.setdefault(entry["targetGroupArn"], []).append({"Id": entry["ip"], "Port": entry["port"]})
    return groups


def register(
    conn: Connection,
    ctx: RequestContext,
    service_name: str,
    entries: list[Doc],
    refused: dict[str, str] | None = None,
) -> list[str]:
    """Register ``entries``; ECS's event per group that gained targets. A group that refuses them gets no
    event here: its ARN and ELB's error go into ``refused`` (the caller retries with a backoff and writes
    :func:`event_register_failed` as often as ECS repeats it)."""
    events = []
    for arn, wanted in _by_group(entries).items():
        tg = elbv2_repo.get_doc(conn, "target_group", ctx.region, arn)
        if tg is None:
            continue  # the group was deleted under the service: nothing to register with
        try:
            count = targets.register(conn, ctx, tg, wanted)
        except ClientError as error:
            if refused is not None:
                refused[arn] = error.message
            else:
                events.append(event_register_failed(service_name, arn, error.message))
            continue
        if count:
            retarget.wake_owners(conn, ctx, [arn])  # the agent running the LB starts checking them now
            events.append(f"(service {service_name}) registered {count} targets in (target-group {arn})")
    return events


def event_register_failed(service_name: str, group_arn: str, message: str) -> str:
    # real text (public service events: "... with (error The following targets are not in ...)")
    return f"(service {service_name}) failed to register targets in (target-group {group_arn}) with (error {message})"


def deregister(conn: Connection, ctx: RequestContext, service_name: str, entries: list[Doc]) -> list[str]:
    """Start draining ``entries`` (those still registered); ECS's event per group where a drain began."""
    events = []
    for arn, leaving in _by_group(entries).items():
        tg = elbv2_repo.get_doc(conn, "target_group", ctx.region, arn)
        if tg is None:
            continue
        count = targets.deregister(conn, ctx, tg, leaving, strict=False)
        if count:
            retarget.wake_owners(conn, ctx, [arn])  # the LB drains them now, not at the agent's next poll
            events.append(f"(service {service_name}) deregistered {count} targets in (target-group {arn})")
    return events


def read_targets(conn: Connection, group_arns: Iterable[str]) -> TargetRows:
    """The target rows of these groups by (group, ip, port), drained ones included (see :func:`summarize`)."""
    arns = sorted(set(group_arns))
    if not arns:
        return {}
    return {(r["target_group_arn"], r["target_id"], r["port"]): r for r in elbv2_repo.targets_of(conn, arns)}


def summarize(entries: list[Doc], rows: TargetRows, now: float) -> tuple[str, planner.TargetFailure | None]:
    """What the load balancers say of a task with these targets, in the planner's terms: draining if any
    target drains, unhealthy if any fails (the first, with ELB's description), healthy when all pass,
    unregistered when none is registered any more, else initial."""
    present = []
    for entry in entries:
        row = rows.get((entry["targetGroupArn"], entry["ip"], entry["port"]))
        if row is not None and (row["drain_until"] is None or row["drain_until"] > now):
            present.append(row)
    if not present:
        return planner.UNREGISTERED, None
    states = [row["state"] for row in present]
    if elb_health.DRAINING in states:
        return planner.DRAINING, None
    for row in present:
        if row["state"] == elb_health.UNHEALTHY:
            failure = planner.TargetFailure(
                row["target_group_arn"], row["port"], row["description"] or "Health checks failed"
            )
            return planner.UNHEALTHY, failure
    if len(present) == len(entries) and all(state == elb_health.HEALTHY for state in states):
        return planner.HEALTHY, None
    return planner.INITIAL, None
