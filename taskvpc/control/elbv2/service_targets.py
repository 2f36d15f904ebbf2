"""ECS services behind load balancers: what the ECS side calls (inside its own transaction).

* :func:`check_load_balancers` - CreateService/UpdateService ``loadBalancers`` with ECS's checks and texts;
* :func:`register_task` / :func:`deregister_task` - a RUNNING task's ENI address at the container port
  in each target group, returning the service events ECS writes;
* :func:`task_drained` - whether every target of a stopping task has left ``draining`` (ECS stops the task
  only then, notes §3 [E6]); :func:`task_healthy` - whether the task counts as healthy in the LB.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import target_groups, targets
from taskvpc.domain.errors import invalid_parameter
from taskvpc.netmodel import elb_health
from taskvpc.store import elbv2_repo

Doc = dict[str, Any]


def check_load_balancers(
    conn: Connection, ctx: RequestContext, load_balancers: list[Doc], task_definition: Doc
) -> list[Doc]:
    """The service's ``loadBalancers`` as ECS keeps them, or ECS's InvalidParameterException."""
    network_mode = task_definition.get("networkMode", "bridge")
    used = target_groups.usage(conn, ctx)
    checked = []
    for entry in load_balancers:
        if entry.get("loadBalancerName"):
            raise invalid_parameter(
                "taskvpc serves ELBv2 target groups only (targetGroupArn), not Classic Load Balancers"
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
            raise invalid_parameter(
                f"The container {container_name} does not exist in the task definition."
            )  # unconfirmed
        ports = {m.get("containerPort") for m in container.get("portMappings", [])}
        if container_port not in ports:
            raise invalid_parameter(
                f"The container {container_name} did not have a container port {container_port} defined."
            )  # unconfirmed wording
        checked.append(
            {"targetGroupArn": arn, "containerName": container_name, "containerPort": container_port}
        )
    return checked


def _service_name(service: Doc) -> str:
    return str(service["serviceName"])


def register_task(conn: Connection, ctx: RequestContext, service: Doc, task_ip: str) -> list[str]:
    """Register a RUNNING task in each of the service's target groups; ECS's events for those it changed."""
    events = []
    for entry in service.get("loadBalancers") or []:
        tg = elbv2_repo.get_doc(conn, "target_group", ctx.region, entry["targetGroupArn"])
        if tg is None:
            continue
        count = targets.register(conn, ctx, tg, [{"Id": task_ip, "Port": entry["containerPort"]}])
        if count:
            # "(service S) registered N targets in (target-group ARN)" - no final period (notes §3)
            events.append(
                f"(service {_service_name(service)}) registered {count} targets in (target-group {tg['TargetGroupArn']})"
            )
    return events


def deregister_task(conn: Connection, ctx: RequestContext, service: Doc, task_ip: str) -> list[str]:
    """Start draining a task's targets before it is stopped; ECS's events for those that began."""
    events = []
    for entry in service.get("loadBalancers") or []:
        tg = elbv2_repo.get_doc(conn, "target_group", ctx.region, entry["targetGroupArn"])
        if tg is None:
            continue
        count = targets.deregister(
            conn, ctx, tg, [{"Id": task_ip, "Port": entry["containerPort"]}], strict=False
        )
        if count:
            events.append(
                f"(service {_service_name(service)}) deregistered {count} targets in (target-group {tg['TargetGroupArn']})"
            )
    return events


def _rows(conn: Connection, ctx: RequestContext, service: Doc, task_ip: str) -> list[Doc]:
    found = []
    for entry in service.get("loadBalancers") or []:
        for row in targets.live_targets(conn, ctx, entry["targetGroupArn"]):
            if row["target_id"] == task_ip and row["port"] == entry["containerPort"]:
                found.append(row)
    return found


def task_drained(conn: Connection, ctx: RequestContext, service: Doc, task_ip: str) -> bool:
    """True once no target of the task is registered or draining any more: the task may be stopped."""
    return not _rows(conn, ctx, service, task_ip)


def task_healthy(conn: Connection, ctx: RequestContext, service: Doc, task_ip: str) -> bool:
    """True when the task is registered and healthy in every target group of the service."""
    rows = _rows(conn, ctx, service, task_ip)
    return len(rows) == len(service.get("loadBalancers") or []) and all(
        r["state"] == elb_health.HEALTHY for r in rows
    )
