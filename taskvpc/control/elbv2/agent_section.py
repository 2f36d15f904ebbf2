"""Which agent runs each load balancer, what it is told (``loadBalancers``), and what it reports back.

**Placement.** Every load balancer is run by one agent: the container instance recorded in the LB's
document (``_AgentInstanceId``) while that instance is ACTIVE; otherwise one is chosen and recorded,
deterministically: among the region's ACTIVE instances (by ARN), the first in the LB's VPC whose agent is
connected, else the first in the LB's VPC, else the first connected, else the first. The agent makes the
VPC's router for the LB itself, and that router routes every subnet of the VPC, so the instance's own
subnet or AZ does not matter (``taskvpc up``'s one local agent runs every load balancer).

**Waking agents.** Every ELBv2 write bumps the desired-state generation of the region's live instances
(:func:`changed`), as a security-group change does: listeners, rules and targets reach the agent running
the LB within one long poll.

**Health.** The agent's checker reports targets whose state changed (:func:`report_target_health`); a
report on a target group none of the instance's load balancers forwards to is ignored, as a report on
another instance's task is.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from taskvpc.agentapi.loadbalancers import (
    DesiredLoadBalancer,
    HealthCheck,
    LbTarget,
    LbTargetGroup,
    TargetHealthReport,
)
from taskvpc.agentapi.network import Eni, Subnet, Vpc
from taskvpc.agentapi.reports import WireError
from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import common, target_groups, targets
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel import elb_health
from taskvpc.store import ec2_repo, elbv2_repo, tasks_repo

Doc = dict[str, Any]
Handler = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]

OWNER = "_AgentInstanceId"

# Timing marks of an ELBv2 change on its way to the data plane (docs/elbv2.md, "Where the time goes"), read
# by bench/lb.py; off unless TASKVPC_LB_TRACE is set (the agent has the same switch).
trace = logging.getLogger("taskvpc.lbtrace")
if os.environ.get("TASKVPC_LB_TRACE"):
    trace.setLevel(logging.DEBUG)


def mark(stage: str, **fields: object) -> None:
    """One timing mark (wall clock: the agent is another process) when tracing is on."""
    if trace.isEnabledFor(logging.DEBUG):
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        trace.debug("lbtrace stage=%s t=%.6f %s", stage, time.time(), extra)


def choose_owner(lb: Doc, instances: list[Doc]) -> str | None:
    """The instance that runs ``lb`` (pure; ``instances`` are ACTIVE ones ordered by ARN)."""
    live = {i["id"] for i in instances}
    if lb.get(OWNER) in live:
        return str(lb[OWNER])
    ranked = sorted(
        enumerate(instances),
        key=lambda pair: (pair[1]["vpc_id"] != lb["VpcId"], not pair[1]["agent_connected"], pair[0]),
    )
    return str(ranked[0][1]["id"]) if ranked else None


def owned_load_balancers(conn: Connection, ctx: RequestContext, instance_id: str) -> list[Doc]:
    """The region's load balancers run by ``instance_id``, (re)placing and recording any without one."""
    instances = elbv2_repo.live_instances(conn, ctx.region)
    mine = []
    for lb in elbv2_repo.list_docs(conn, "load_balancer", ctx.region):
        owner = choose_owner(lb, instances)
        if owner != lb.get(OWNER):
            lb[OWNER] = owner
            elbv2_repo.update_doc(conn, "load_balancer", lb["LoadBalancerArn"], lb)
        if owner == instance_id:
            mine.append(lb)
    return mine


def changed(conn: Connection, ctx: RequestContext) -> None:
    """An ELBv2 resource changed: wake the agents (the one running the LB reads its new section)."""
    ctx.notify.update(tasks_repo.bump_region_generations(conn, ctx.region))


def waking(handler: Handler) -> Handler:
    """``handler`` followed by :func:`changed` once it succeeded (an error changed nothing)."""

    def run(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        result = handler(ctx, params)
        with ctx.db.transaction() as conn:
            changed(conn, ctx)
        mark("committed", op=getattr(handler, "__name__", "handler"))
        return result

    run.__name__ = getattr(handler, "__name__", "handler")
    return run


# ---------------------------------------------------------------------------------------------- section


def _health_check(tg: Doc) -> HealthCheck:
    return HealthCheck(
        protocol=str(tg.get("HealthCheckProtocol") or "HTTP"),
        port=str(tg.get("HealthCheckPort") or "traffic-port"),
        path=str(tg.get("HealthCheckPath") or "/"),
        interval=int(tg.get("HealthCheckIntervalSeconds") or 30),
        timeout=int(tg.get("HealthCheckTimeoutSeconds") or 5),
        healthy_threshold=int(tg.get("HealthyThresholdCount") or 5),
        unhealthy_threshold=int(tg.get("UnhealthyThresholdCount") or 2),
        matcher=str((tg.get("Matcher") or {}).get("HttpCode") or "200"),
    )


def _attributes(tg: Doc) -> dict[str, str]:
    defaults = elb.tg_attribute_defaults(tg.get("Protocol"), str(tg.get("TargetType") or "ip"))
    return {**defaults, **(tg.get("_Attributes") or {})}


def _vpc(conn: Connection, ctx: RequestContext, vpc_id: str) -> Vpc:
    vpc = ec2_repo.get_vpc(conn, ctx.region, vpc_id)
    blocks = [a["CidrBlock"] for a in (vpc or {}).get("CidrBlockAssociationSet", [])]
    subnets = sorted(ec2_repo.list_subnets(conn, ctx.region, vpc_id=vpc_id), key=lambda s: s["CidrBlock"])
    return Vpc(
        vpc_id,
        tuple(blocks or ([vpc["CidrBlock"]] if vpc else [])),
        tuple(Subnet.of(s["SubnetId"], s["CidrBlock"], s["AvailabilityZone"]) for s in subnets),
    )


def _enis(conn: Connection, ctx: RequestContext, lb: Doc, vpc: Vpc) -> tuple[Eni, ...]:
    cidrs = {s.subnet_id: s.cidr_block for s in vpc.subnets}
    eni_ids = [zone["_EniId"] for zone in lb["AvailabilityZones"] if zone.get("_EniId")]
    groups = ec2_repo.eni_groups(conn, eni_ids)  # the ENIs' current groups (memberships live apart)
    found = []
    for eni_id in eni_ids:
        eni = ec2_repo.get_eni(conn, ctx.region, eni_id)
        if eni is not None and eni["SubnetId"] in cidrs:
            attachment = (eni.get("Attachment") or {}).get("AttachmentId") or ""
            eni = {**eni, "Groups": [{"GroupId": g} for g in groups.get(eni_id, [])]}
            found.append(Eni.from_ec2(eni, cidrs[eni["SubnetId"]], attachment))
    return tuple(found)


def forwarded_groups(
    conn: Connection, ctx: RequestContext, lb: Doc
) -> tuple[list[Doc], list[Doc], list[str]]:
    """``lb``'s listeners, their rules, and the target groups they forward to (ARNs, in order)."""
    listeners = elbv2_repo.list_docs(conn, "listener", ctx.region, load_balancer_arn=lb["LoadBalancerArn"])
    rules = elbv2_repo.list_rules(conn, [li["ListenerArn"] for li in listeners])
    forwarded: list[str] = []
    for listener in listeners:
        forwarded += target_groups.forward_targets(listener["DefaultActions"])
    for rule in rules:
        forwarded += target_groups.forward_targets(rule["Actions"])
    return listeners, rules, list(dict.fromkeys(forwarded))


def targets_by_group(
    conn: Connection, ctx: RequestContext, tg_arns: list[str]
) -> dict[str, tuple[LbTarget, ...]]:
    """The targets of each group as the agent is told them: registered ones and those still draining (with
    the seconds left of their delay), in registration order."""
    found: dict[str, list[LbTarget]] = {}
    for row in elbv2_repo.targets_of(conn, tg_arns) if tg_arns else []:
        drain_until = row["drain_until"]
        if drain_until is None or drain_until > ctx.now:  # still registered or draining
            found.setdefault(row["target_group_arn"], []).append(
                LbTarget(
                    row["target_id"],
                    int(row["port"]),
                    str(row["state"]),
                    None if drain_until is None else max(0.0, float(drain_until) - ctx.now),
                )
            )
    return {arn: tuple(targets) for arn, targets in found.items()}


def describe_for_agent(conn: Connection, ctx: RequestContext, lb: Doc) -> DesiredLoadBalancer:
    arn = lb["LoadBalancerArn"]
    vpc = _vpc(conn, ctx, lb["VpcId"])
    listeners, rules, forwarded = forwarded_groups(conn, ctx, lb)
    # Every group and every target in one query each: this is on the way of every change to the data
    # plane (docs/elbv2.md, "Where the time goes").
    docs = {
        tg["TargetGroupArn"]: tg
        for tg in (elbv2_repo.list_docs(conn, "target_group", ctx.region, arn=forwarded) if forwarded else [])
    }
    targets_of = targets_by_group(conn, ctx, forwarded)
    groups = []
    for tg_arn in forwarded:
        tg = docs.get(tg_arn)
        if tg is None:
            continue
        groups.append(
            LbTargetGroup(
                tg_arn,
                str(tg.get("Protocol") or "HTTP"),
                int(tg.get("Port") or 80),
                _health_check(tg),
                targets_of.get(tg_arn, ()),
                tuple(sorted(_attributes(tg).items())),
            )
        )
    return DesiredLoadBalancer(
        arn=arn,
        name=lb["LoadBalancerName"],
        type=lb["Type"],
        vpc=vpc,
        enis=_enis(conn, ctx, lb, vpc),
        listeners=tuple(common.public(li) for li in listeners),
        rules=tuple({**common.public(r), "ListenerArn": r["_ListenerArn"]} for r in rules),
        target_groups=tuple(groups),
    )


def load_balancers_for(
    conn: Connection, ctx: RequestContext, owned: list[Doc]
) -> tuple[DesiredLoadBalancer, ...]:
    """The ``loadBalancers`` section: ``owned`` (:func:`owned_load_balancers`) as the agent needs them."""
    return tuple(describe_for_agent(conn, ctx, lb) for lb in owned)


def carried_groups(owned: list[Doc]) -> dict[str, str]:
    """Security group id -> VPC id of every group the ENIs of the load balancers ``owned`` carry."""
    carried: dict[str, str] = {}
    for lb in owned:
        for group_id in lb.get("SecurityGroups") or []:
            carried[group_id] = lb["VpcId"]
    return carried


# ---------------------------------------------------------------------------------------------- report


def report_target_health(ctx: RequestContext, instance_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``POST …/target-health``: each entry ends in :func:`targets.report_target_health`."""
    try:
        report = TargetHealthReport.from_wire(payload)
    except WireError as error:
        raise ClientError("BadRequest", str(error), 400) from None
    with ctx.db.transaction() as conn:
        served: set[str] = set()
        for lb in owned_load_balancers(conn, ctx, instance_id):
            served.update(forwarded_groups(conn, ctx, lb)[2])
    for entry in report.targets:  # all or nothing: a bad entry changes nothing
        if entry.state not in (elb_health.HEALTHY, elb_health.UNHEALTHY, elb_health.INITIAL) or (
            entry.state != elb_health.HEALTHY and entry.reason not in elb_health.DESCRIPTIONS
        ):
            raise ClientError("BadRequest", f"bad state/reason {entry.state!r}/{entry.reason!r}.", 400)
    recorded = 0
    for entry in report.targets:
        if entry.target_group_arn not in served:
            continue  # not this instance's to judge (or gone): ignored
        recorded += targets.report_target_health(
            ctx, entry.target_group_arn, (entry.ip, entry.port), entry.state, entry.reason, entry.code
        )
    return {"recorded": recorded}
