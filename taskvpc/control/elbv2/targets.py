"""RegisterTargets, DeregisterTargets, DescribeTargetHealth, and the data plane's health reports.

Until a health checker reports, a registered target stays ``initial`` / ``Elb.InitialHealthChecking``
(never a made-up ``healthy``). Draining ends by the clock: a target whose deregistration delay has passed
is gone, read as such without any loop, and its row is swept on the group's next write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import agent_section, common, retarget, target_groups
from taskvpc.domain import elb
from taskvpc.netmodel import elb_health
from taskvpc.store import ec2_repo, elbv2_repo

Doc = dict[str, Any]


def policy(tg: Doc) -> elb_health.Policy:
    return elb_health.Policy(
        healthy_threshold=tg.get("HealthyThresholdCount", 5),
        unhealthy_threshold=tg.get("UnhealthyThresholdCount", 2),
        deregistration_delay=float(tg["_Attributes"]["deregistration_delay.timeout_seconds"]),
        application=elb.tg_is_alb(tg["Protocol"]),
    )


def _zone(conn: Connection, ctx: RequestContext, tg: Doc, target: Doc) -> str | None:
    if tg["TargetType"] != "ip":
        raise elb.invalid_target()  # taskvpc has no EC2 instances to register
    vpc = ec2_repo.get_vpc(conn, ctx.region, tg["VpcId"])
    if vpc is None:
        raise elb.invalid_target()
    subnets = [
        (s["CidrBlock"], s["AvailabilityZone"])
        for s in ec2_repo.list_subnets(conn, ctx.region, vpc_id=tg["VpcId"])
    ]
    return elb.ip_target_zone(target["Id"], vpc["CidrBlock"], subnets, target.get("AvailabilityZone"))


def register(conn: Connection, ctx: RequestContext, tg: Doc, targets: list[Doc]) -> int:
    """Register ``targets`` ({Id, Port?, AvailabilityZone?}); the number newly registered (or re-registered
    out of a drain). A target already registered and not draining is left as it is."""
    elbv2_repo.remove_targets_drained(conn, tg["TargetGroupArn"], ctx.now)
    present = {(t["target_id"], t["port"]): t for t in elbv2_repo.targets_of(conn, [tg["TargetGroupArn"]])}
    checked = []
    for target in targets:
        port: int = target["Port"] if "Port" in target else tg["Port"]
        if not 1 <= port <= 65535:
            raise elb.validation(f"Port '{port}' must be between 1 and 65535")  # unconfirmed
        checked.append((target["Id"], port, _zone(conn, ctx, tg, target)))
    count = 0
    fresh = elb_health.registered(policy(tg))
    for target_id, port, zone in checked:
        known = present.get((target_id, port))
        if known is not None and known["state"] != elb_health.DRAINING:
            continue
        row = {
            "target_group_arn": tg["TargetGroupArn"],
            "target_id": target_id,
            "port": port,
            "availability_zone": zone,
            "state": fresh.state,
            "reason": fresh.reason,
            "description": fresh.description,
            "registered_at": ctx.now,
            "drain_until": None,
        }
        elbv2_repo.put_target(conn, ctx.region, row)
        count += 1
    return count


def deregister(
    conn: Connection, ctx: RequestContext, tg: Doc, targets: list[Doc], *, strict: bool = True
) -> int:
    """Start draining ``targets``; the number that began to drain. Unregistered targets are an
    ``InvalidTarget`` error when ``strict`` (the API), skipped otherwise (the service scheduler)."""
    elbv2_repo.remove_targets_drained(conn, tg["TargetGroupArn"], ctx.now)
    present = {(t["target_id"], t["port"]): t for t in elbv2_repo.targets_of(conn, [tg["TargetGroupArn"]])}
    keys = []
    for target in targets:
        key = (target["Id"], target.get("Port", tg["Port"]))
        if key not in present:
            if strict:
                raise elb.invalid_target()
            continue
        keys.append(key)
    in_use = tg["TargetGroupArn"] in target_groups.usage(conn, ctx)
    rules = policy(tg)
    count = 0
    for target_id, port in keys:
        row = present[(target_id, port)]
        if row["state"] == elb_health.DRAINING:
            continue
        count += 1
        if not in_use or rules.deregistration_delay <= 0:
            elbv2_repo.set_target_state(conn, tg["TargetGroupArn"], target_id, port, drain_until=ctx.now)
            continue
        draining = elb_health.step(
            elb_health.Health(row["state"]), elb_health.Event("deregister", now=ctx.now), rules
        )
        elbv2_repo.set_target_state(
            conn,
            tg["TargetGroupArn"],
            target_id,
            port,
            state=draining.state,
            reason=draining.reason,
            description=draining.description,
            drain_until=draining.drain_until,
        )
    elbv2_repo.remove_targets_drained(conn, tg["TargetGroupArn"], ctx.now)
    return count


def register_targets(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        tg = common.require_tg(conn, ctx, params["TargetGroupArn"])
        count = register(conn, ctx, tg, params["Targets"])
        woken = retarget.wake_owners(conn, ctx, [tg["TargetGroupArn"]]) if count else []
    _committed(woken, "register_targets")
    return {}


def deregister_targets(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        tg = common.require_tg(conn, ctx, params["TargetGroupArn"])
        count = deregister(conn, ctx, tg, params["Targets"])
        woken = retarget.wake_owners(conn, ctx, [tg["TargetGroupArn"]]) if count else []
    _committed(woken, "deregister_targets")
    return {}


def _committed(woken: list[retarget.Woken] | None, operation: str) -> None:
    """The target change and the owners' wake-up committed in one transaction: journal the generations
    it made (control/elbv2/retarget.py), then the timing mark bench/lb.py reads."""
    retarget.JOURNAL.record(woken or [])
    agent_section.mark("committed", op=operation)


def live_targets(conn: Connection, ctx: RequestContext, tg_arn: str) -> list[Doc]:
    """Target rows of a group still registered or draining at ``ctx.now``."""
    rows = elbv2_repo.targets_of(conn, [tg_arn])
    return [row for row in rows if row["drain_until"] is None or row["drain_until"] > ctx.now]


def _description(tg: Doc, row: Doc | None, target: Doc, in_use: bool) -> Doc:
    port = row["port"] if row else target.get("Port", tg["Port"])
    shown_target: Doc = {"Id": target["Id"], "Port": port}
    if row is None:
        health: Doc = {
            "State": elb_health.UNUSED,
            "Reason": "Target.NotRegistered",
            "Description": elb_health.describe("Target.NotRegistered"),
        }
    elif not in_use and row["state"] != elb_health.DRAINING:
        health = {
            "State": elb_health.UNUSED,
            "Reason": "Target.NotInUse",
            "Description": elb_health.describe("Target.NotInUse"),
        }
    else:
        health = {"State": row["state"]}
        if row["reason"]:
            health["Reason"] = row["reason"]
            health["Description"] = row["description"]
    if row is not None and row["availability_zone"]:
        shown_target["AvailabilityZone"] = row["availability_zone"]
    hc_port = tg.get("HealthCheckPort", "traffic-port")
    return {
        "Target": shown_target,
        "HealthCheckPort": str(port) if hc_port == "traffic-port" else str(hc_port),
        "TargetHealth": health,
    }


def describe_target_health(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        tg = common.require_tg(conn, ctx, params["TargetGroupArn"])
        rows = live_targets(conn, ctx, tg["TargetGroupArn"])
        in_use = tg["TargetGroupArn"] in target_groups.usage(conn, ctx)
    asked = params.get("Targets")
    if not asked:
        found = [_description(tg, row, {"Id": row["target_id"]}, in_use) for row in rows]
        return {"TargetHealthDescriptions": found}
    descriptions = []
    for target in asked:
        matching = [
            r
            for r in rows
            if r["target_id"] == target["Id"] and ("Port" not in target or r["port"] == target["Port"])
        ]
        if not matching:
            descriptions.append(_description(tg, None, target, in_use))
        descriptions.extend(_description(tg, row, target, in_use) for row in matching)
    return {"TargetHealthDescriptions": descriptions}


def report_target_health(
    ctx: RequestContext,
    tg_arn: str,
    target: tuple[str, int],
    state: str,
    reason: str | None,
    code: str | None = None,
) -> bool:
    """Record what a health checker saw (the data plane calls this). False when the target is not
    registered or is draining: a drain is judged by the clock, not by checks."""
    if state not in (elb_health.HEALTHY, elb_health.UNHEALTHY, elb_health.INITIAL):
        raise ValueError(f"a health checker cannot report state {state!r}")
    if state == elb_health.HEALTHY:
        reason = None
    elif reason not in elb_health.DESCRIPTIONS:
        raise ValueError(f"unknown reason code {reason!r}")
    target_id, port = target
    with ctx.db.transaction() as conn:
        rows = {(r["target_id"], r["port"]): r for r in live_targets(conn, ctx, tg_arn)}
        row = rows.get((target_id, port))
        if row is None or row["state"] == elb_health.DRAINING:
            return False
        return elbv2_repo.set_target_state(
            conn,
            tg_arn,
            target_id,
            port,
            state=state,
            reason=reason,
            description=elb_health.describe(reason, code) if reason else None,
        )
