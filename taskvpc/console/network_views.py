"""What the load balancer, target group, flow log and VPC layout pages show, as plain data: ELBv2, EC2
and ECS answers in, rows (and the layout picture's boxes) out. No I/O, unit-tested like views.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]


def name_from_arn(arn: str) -> str:
    """A load balancer's or target group's name from its ARN (``.../app/<name>/<id>``,
    ``.../targetgroup/<name>/<id>``)."""
    parts = arn.split("/")
    if ":targetgroup/" in arn and len(parts) >= 3:
        return parts[-2]
    if ":loadbalancer/" in arn and len(parts) >= 4:
        return parts[-2]
    return arn


def eni_description(load_balancer_arn: str) -> str:
    """The Description EC2 gives a load balancer's ENIs: ``ELB app/<name>/<id>``."""
    return "ELB " + load_balancer_arn.split(":loadbalancer/", 1)[-1]


# ---- load balancers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneRow:
    zone: str
    subnet_id: str
    addresses: tuple[str, ...]  # the private IPs of the load balancer's ENIs in this subnet
    eni_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleView:
    priority: str
    conditions: tuple[str, ...]
    actions: tuple[tuple[str, str], ...]  # (sentence, target group name to link or "")


@dataclass(frozen=True, slots=True)
class ListenerView:
    arn: str
    protocol: str
    port: str
    rules: tuple[RuleView, ...]


@dataclass(frozen=True, slots=True)
class LoadBalancerView:
    name: str
    arn: str
    lb_type: str
    scheme: str
    state: str
    state_reason: str
    dns_name: str
    vpc_id: str
    security_groups: tuple[str, ...]
    zones: tuple[ZoneRow, ...]
    listeners: tuple[ListenerView, ...]


def condition_text(condition: Mapping[str, Any]) -> str:
    """One rule condition as a sentence: ``path-pattern is /api/*``; ``http-header X-Env is blue``."""
    field = str(condition.get("Field", ""))
    configs = {
        "host-header": "HostHeaderConfig",
        "path-pattern": "PathPatternConfig",
        "http-request-method": "HttpRequestMethodConfig",
        "source-ip": "SourceIpConfig",
    }
    values: list[str] = []
    config = condition.get(configs.get(field, ""), {})
    if field == "http-header":
        header = condition.get("HttpHeaderConfig", {})
        field = f"http-header {header.get('HttpHeaderName', '')}"
        values = [str(v) for v in header.get("Values", [])]
    elif field == "query-string":
        values = [
            f"{p.get('Key', '')}={p.get('Value', '')}" if p.get("Key") else str(p.get("Value", ""))
            for p in condition.get("QueryStringConfig", {}).get("Values", [])
        ]
    elif isinstance(config, Mapping) and config.get("Values"):
        values = [str(v) for v in config["Values"]]
    if not values:
        values = [str(v) for v in condition.get("Values", [])]
    return f"{field} is {' or '.join(values)}"


def action_rows(action: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One rule action as (sentence, target group name to link); a weighted forward gives one row per
    target group."""
    kind = str(action.get("Type", ""))
    if kind == "forward":
        groups = action.get("ForwardConfig", {}).get("TargetGroups") or []
        if not groups and action.get("TargetGroupArn"):
            groups = [{"TargetGroupArn": action["TargetGroupArn"]}]
        rows = []
        for group in groups:
            name = name_from_arn(str(group["TargetGroupArn"]))
            weight = f" (weight {group['Weight']})" if len(groups) > 1 and "Weight" in group else ""
            rows.append((f"forward to {name}{weight}", name))
        return rows or [("forward", "")]
    if kind == "fixed-response":
        config = action.get("FixedResponseConfig", {})
        body = f" “{config['MessageBody']}”" if config.get("MessageBody") else ""
        return [(f"fixed response {config.get('StatusCode', '')}{body}", "")]
    if kind == "redirect":
        config = action.get("RedirectConfig", {})
        where = "{}://{}:{}{}?{}".format(
            config.get("Protocol", "#{protocol}"),
            config.get("Host", "#{host}"),
            config.get("Port", "#{port}"),
            config.get("Path", "/#{path}"),
            config.get("Query", "#{query}"),
        )
        return [(f"redirect {config.get('StatusCode', '')} to {where}", "")]
    return [(kind, "")]


def _priority_key(rule: Mapping[str, Any]) -> tuple[int, int]:
    priority = str(rule.get("Priority", ""))
    return (1, 0) if priority == "default" else (0, int(priority) if priority.isdigit() else 0)


def rule_view(rule: Mapping[str, Any]) -> RuleView:
    actions = sorted(rule.get("Actions", []), key=lambda a: int(a.get("Order", 0) or 0))
    return RuleView(
        priority=str(rule.get("Priority", "")),
        conditions=tuple(condition_text(c) for c in rule.get("Conditions", [])),
        actions=tuple(row for action in actions for row in action_rows(action)),
    )


def load_balancer_view(
    lb: Mapping[str, Any],
    enis: Sequence[Mapping[str, Any]],
    listeners: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
) -> LoadBalancerView:
    """A DescribeLoadBalancers entry with its ENIs (DescribeNetworkInterfaces) and each listener with its
    rules (DescribeListeners, DescribeRules), rules in the order the listener evaluates them."""
    zones = []
    for zone in lb.get("AvailabilityZones", []):
        subnet = str(zone.get("SubnetId", ""))
        mine = [e for e in enis if e.get("SubnetId") == subnet]
        addresses = [str(e.get("PrivateIpAddress", "")) for e in mine]
        for address in zone.get("LoadBalancerAddresses", []):
            ip = str(address.get("PrivateIPv4Address") or address.get("IpAddress") or "")
            if ip and ip not in addresses:
                addresses.append(ip)
        zones.append(
            ZoneRow(
                str(zone.get("ZoneName", "")),
                subnet,
                tuple(addresses),
                tuple(str(e.get("NetworkInterfaceId", "")) for e in mine),
            )
        )
    shown = tuple(
        ListenerView(
            arn=str(listener.get("ListenerArn", "")),
            protocol=str(listener.get("Protocol", "")),
            port=str(listener.get("Port", "")),
            rules=tuple(rule_view(r) for r in sorted(rules, key=_priority_key)),
        )
        for listener, rules in sorted(listeners, key=lambda pair: int(pair[0].get("Port", 0) or 0))
    )
    state = lb.get("State", {})
    return LoadBalancerView(
        name=str(lb.get("LoadBalancerName", "")),
        arn=str(lb.get("LoadBalancerArn", "")),
        lb_type=str(lb.get("Type", "")),
        scheme=str(lb.get("Scheme", "")),
        state=str(state.get("Code", "")),
        state_reason=str(state.get("Reason", "")),
        dns_name=str(lb.get("DNSName", "")),
        vpc_id=str(lb.get("VpcId", "")),
        security_groups=tuple(str(g) for g in lb.get("SecurityGroups", [])),
        zones=tuple(sorted(zones, key=lambda z: (z.zone, z.subnet_id))),
        listeners=shown,
    )


# ---- target groups -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetRow:
    target_id: str
    port: str
    zone: str
    state: str
    reason: str
    description: str


def target_rows(descriptions: Sequence[Mapping[str, Any]]) -> list[TargetRow]:
    """DescribeTargetHealth's descriptions, one row per target, by id then port."""
    rows = [
        TargetRow(
            target_id=str(d.get("Target", {}).get("Id", "")),
            port=str(d.get("Target", {}).get("Port", "")),
            zone=str(d.get("Target", {}).get("AvailabilityZone", "")),
            state=str(d.get("TargetHealth", {}).get("State", "")),
            reason=str(d.get("TargetHealth", {}).get("Reason", "")),
            description=str(d.get("TargetHealth", {}).get("Description", "")),
        )
        for d in descriptions
    ]
    return sorted(rows, key=lambda r: (r.target_id, r.port))


def health_check_text(group: Mapping[str, Any]) -> str:
    """``HTTP /health on traffic-port every 30 s`` from a DescribeTargetGroups entry."""
    protocol = str(group.get("HealthCheckProtocol", ""))
    path = f" {group['HealthCheckPath']}" if group.get("HealthCheckPath") else ""
    port = str(group.get("HealthCheckPort", "traffic-port"))
    every = group.get("HealthCheckIntervalSeconds")
    return f"{protocol}{path} on {port}" + (f" every {every} s" if every else "")


# ---- flow logs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowLogRow:
    flow_log_id: str
    resource_id: str
    resource_kind: str  # vpc, subnet, eni
    traffic_type: str
    log_group: str
    status: str
    created_at: Any


def flow_log_rows(flow_logs: Sequence[Mapping[str, Any]]) -> list[FlowLogRow]:
    """DescribeFlowLogs' entries by resource then id."""
    rows = [
        FlowLogRow(
            flow_log_id=str(f.get("FlowLogId", "")),
            resource_id=str(f.get("ResourceId", "")),
            resource_kind=str(f.get("ResourceId", "")).split("-", 1)[0],
            traffic_type=str(f.get("TrafficType", "")),
            log_group=str(f.get("LogGroupName", "")),
            status=str(f.get("FlowLogStatus", "")),
            created_at=f.get("CreationTime"),
        )
        for f in flow_logs
    ]
    return sorted(rows, key=lambda r: (r.resource_id, r.flow_log_id))
