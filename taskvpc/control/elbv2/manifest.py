"""ELBv2 (query protocol): application and network load balancers with ip targets, served by taskvpc."""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import (
    agent_section,
    listeners,
    load_balancers,
    rules,
    tagging,
    target_groups,
    targets,
)
from taskvpc.control.manifest import ServiceManifest

# ELB's default quotas (ELB user guides, "Quotas"); taskvpc enforces the ones its checks name.
_LIMITS = {
    "application-load-balancers": "50",
    "network-load-balancers": "50",
    "target-groups": "3000",
    "targets-per-application-load-balancer": "1000",
    "targets-per-network-load-balancer": "3000",
    "listeners-per-application-load-balancer": "50",
    "listeners-per-network-load-balancer": "50",
    "rules-per-application-load-balancer": "100",
    "condition-values-per-alb-rule": "5",
    "target-groups-per-action-on-application-load-balancer": "5",
    "target-groups-per-action-on-network-load-balancer": "1",
}


def describe_account_limits(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"Limits": [{"Name": name, "Max": value} for name, value in _LIMITS.items()]}


_HANDLERS = {
    "CreateLoadBalancer": load_balancers.create_load_balancer,
    "DescribeLoadBalancers": load_balancers.describe_load_balancers,
    "DeleteLoadBalancer": load_balancers.delete_load_balancer,
    "DescribeLoadBalancerAttributes": load_balancers.describe_load_balancer_attributes,
    "ModifyLoadBalancerAttributes": load_balancers.modify_load_balancer_attributes,
    "CreateTargetGroup": target_groups.create_target_group,
    "DescribeTargetGroups": target_groups.describe_target_groups,
    "ModifyTargetGroup": target_groups.modify_target_group,
    "DeleteTargetGroup": target_groups.delete_target_group,
    "DescribeTargetGroupAttributes": target_groups.describe_target_group_attributes,
    "ModifyTargetGroupAttributes": target_groups.modify_target_group_attributes,
    "RegisterTargets": targets.register_targets,
    "DeregisterTargets": targets.deregister_targets,
    "DescribeTargetHealth": targets.describe_target_health,
    "CreateListener": listeners.create_listener,
    "DescribeListeners": listeners.describe_listeners,
    "ModifyListener": listeners.modify_listener,
    "DeleteListener": listeners.delete_listener,
    "CreateRule": rules.create_rule,
    "DescribeRules": rules.describe_rules,
    "ModifyRule": rules.modify_rule,
    "DeleteRule": rules.delete_rule,
    "SetRulePriorities": rules.set_rule_priorities,
    "AddTags": tagging.add_tags,
    "RemoveTags": tagging.remove_tags,
    "DescribeTags": tagging.describe_tags,
    "DescribeAccountLimits": describe_account_limits,
}

_WAKE_THEMSELVES = frozenset({"RegisterTargets", "DeregisterTargets"})

MANIFEST = ServiceManifest(
    model="elbv2",
    signing_name="elasticloadbalancing",
    protocol="query",
    regional=True,
    # Every write wakes the agents: the one running the LB reads its new ``loadBalancers`` section. Target
    # changes wake only the agents running the LBs concerned, in their own transaction (retarget.py).
    handlers={
        name: handler
        if name.startswith("Describe") or name in _WAKE_THEMSELVES
        else agent_section.waking(handler)
        for name, handler in _HANDLERS.items()
    },
    tables=(
        "elb_load_balancers",
        "elb_target_groups",
        "elb_listeners",
        "elb_rules",
        "elb_targets",
        "elb_tags",
    ),
    migrations=("0040",),
)
