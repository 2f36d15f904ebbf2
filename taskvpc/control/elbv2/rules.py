"""Listener rules: Create/Describe/Modify/Delete and SetRulePriorities (priorities unique, 1-50000)."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import actions, common, tagging
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.store import elbv2_repo

Doc = dict[str, Any]


def priority_in_use(priority: int) -> ClientError:
    # "Priority '1' is currently in use" (CLI transcripts quoting ELB)
    return ClientError("PriorityInUse", f"Priority '{priority}' is currently in use")


def default_rule_error(arn: str) -> ClientError:
    return ClientError(
        "OperationNotPermitted", f"Default rule '{arn}' cannot be modified or deleted this way"
    )  # unconfirmed


def _check_priority(priority: int) -> None:
    if not 1 <= priority <= 50000:
        raise elb.validation(f"Priority '{priority}' must be between 1 and 50000")  # unconfirmed


def create_rule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    priority = params["Priority"]
    _check_priority(priority)
    conditions = actions.check_conditions(params["Conditions"])
    new_tags = tagging.checked_tags(params.get("Tags") or [])
    with ctx.db.transaction() as conn:
        listener = common.require_listener(conn, ctx, params["ListenerArn"])
        lb = common.require_lb(conn, ctx, listener["LoadBalancerArn"])
        if lb["Type"] != "application":
            raise elb.validation(
                "Rules are supported only by Application Load Balancer listeners"
            )  # unconfirmed
        shown_actions = actions.check_actions(conn, ctx, params["Actions"], lb, listener["Protocol"])
        arn = elb.rule_arn(listener["ListenerArn"], common.new_suffix(ctx))
        rule = {
            "RuleArn": arn,
            "Priority": str(priority),
            "Conditions": conditions,
            "Actions": shown_actions,
            "IsDefault": False,
            "_ListenerArn": listener["ListenerArn"],
        }
        if not elbv2_repo.insert_doc(
            conn,
            "rule",
            ctx.region,
            arn,
            rule,
            ctx.now,
            listener_arn=listener["ListenerArn"],
            priority=priority,
        ):
            raise priority_in_use(priority)
        elbv2_repo.put_tags(conn, ctx.region, arn, new_tags)
    return {"Rules": [common.public(rule)]}


def describe_rules(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    listener_arn, arns = params.get("ListenerArn"), list(params.get("RuleArns") or [])
    if not listener_arn and not arns:
        raise elb.validation("You must specify either listener ARN or rule ARNs")  # unconfirmed
    with ctx.db.read() as conn:
        if listener_arn:
            common.require_listener(conn, ctx, listener_arn)
            docs = elbv2_repo.list_rules(conn, [listener_arn])
        else:
            docs = elbv2_repo.list_docs(conn, "rule", ctx.region, arn=arns)
    if arns:
        by_arn = {doc["RuleArn"]: doc for doc in docs}
        missing = [arn for arn in arns if arn not in by_arn]
        if missing:
            raise common.rule_not_found(missing)
        docs = [by_arn[arn] for arn in dict.fromkeys(arns)]
    return common.page(ctx, "DescribeRules", docs, params, "RuleArn", "Rules")


def modify_rule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        rule = common.require_rule(conn, ctx, params["RuleArn"])
        listener = common.require_listener(conn, ctx, rule["_ListenerArn"])
        lb = common.require_lb(conn, ctx, listener["LoadBalancerArn"])
        if params.get("Conditions"):
            if rule["IsDefault"]:
                raise elb.validation("The conditions of a default rule cannot be modified")  # unconfirmed
            rule["Conditions"] = actions.check_conditions(params["Conditions"])
        if params.get("Actions"):
            rule["Actions"] = actions.check_actions(conn, ctx, params["Actions"], lb, listener["Protocol"])
            if rule["IsDefault"]:
                listener["DefaultActions"] = rule["Actions"]
                elbv2_repo.update_doc(conn, "listener", listener["ListenerArn"], listener)
        elbv2_repo.update_doc(conn, "rule", rule["RuleArn"], rule)
    return {"Rules": [common.public(rule)]}


def delete_rule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        rule = common.require_rule(conn, ctx, params["RuleArn"])
        if rule["IsDefault"]:
            raise ClientError("OperationNotPermitted", "Default rules cannot be deleted")  # unconfirmed
        elbv2_repo.delete_doc(conn, "rule", rule["RuleArn"])
    return {}


def set_rule_priorities(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = {entry["RuleArn"]: entry["Priority"] for entry in params["RulePriorities"]}
    for priority in wanted.values():
        _check_priority(priority)
    seen: set[int] = set()
    for priority in wanted.values():
        if priority in seen:
            raise priority_in_use(priority)
        seen.add(priority)
    with ctx.db.transaction() as conn:
        rules = [common.require_rule(conn, ctx, arn) for arn in wanted]
        for rule in rules:
            if rule["IsDefault"]:
                raise default_rule_error(rule["RuleArn"])
        listeners = {rule["_ListenerArn"] for rule in rules}
        others = [
            r
            for r in elbv2_repo.list_rules(conn, listeners)
            if r["RuleArn"] not in wanted and not r["IsDefault"]
        ]
        taken = {(r["_ListenerArn"], int(r["Priority"])) for r in others}
        for rule in rules:
            if (rule["_ListenerArn"], wanted[rule["RuleArn"]]) in taken:
                raise priority_in_use(wanted[rule["RuleArn"]])
        # Park the moved rules on negative priorities first, so swapping two rules never collides.
        for n, rule in enumerate(rules):
            elbv2_repo.update_doc(conn, "rule", rule["RuleArn"], rule, priority=-(n + 1))
        for rule in rules:
            rule["Priority"] = str(wanted[rule["RuleArn"]])
            elbv2_repo.update_doc(conn, "rule", rule["RuleArn"], rule, priority=wanted[rule["RuleArn"]])
    return {"Rules": [common.public(rule) for rule in rules]}
