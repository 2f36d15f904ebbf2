"""The ``loadBalancers`` section (the load balancers this instance runs) and the target-health report.

One entry per load balancer the control plane gave this instance to run (``control/elbv2/agent_section.py``
picks one agent per load balancer). It carries what the data plane needs and nothing more: the LB's ENIs
(``Eni``, as task ENIs travel, with the LB's security groups), its VPC with every subnet (the VPC router
must route them all), its listeners and rules as ELB's own documents (what DescribeListeners and
DescribeRules answer; ``netmodel/elb_haproxy.py`` compiles them), and the target groups it forwards to
with their health-check settings, attributes and registered targets (``draining`` ones too, until their
delay ends).

The report goes the other way: what the agent's health checker concluded, one entry per target whose
state changed (``POST …/instances/<id>/target-health``), read strictly like the task report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import Section, register_section
from taskvpc.agentapi.delta import register_keyed_merge
from taskvpc.agentapi.network import Eni, Vpc
from taskvpc.agentapi.reports import WireError

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LbTarget:
    ip: str
    port: int
    state: str  # the control plane's view: initial | healthy | unhealthy | draining
    # A draining target's seconds left of its deregistration delay when the answer was made: the agent
    # times the delay's end itself (nothing wakes it when a delay merely runs out).
    drain_seconds: float | None = None

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> LbTarget | None:
        ip, port = read.string(doc.get("id")), read.positive(doc.get("port"))
        if ip is None or port is None:
            return None
        return cls(
            ip, port, read.string(doc.get("state")) or "initial", read.seconds(doc.get("drainSeconds"))
        )

    def to_wire(self) -> Doc:
        doc: Doc = {"id": self.ip, "port": self.port, "state": self.state}
        if self.drain_seconds is not None:
            doc["drainSeconds"] = self.drain_seconds
        return doc


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A target group's health-check settings (ELB's members, defaults already applied)."""

    protocol: str = "HTTP"  # HTTP | HTTPS | TCP
    port: str = "traffic-port"  # or a port number as text
    path: str = "/"
    interval: int = 30
    timeout: int = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"  # "200", "200,202", "200-299"

    def port_for(self, traffic_port: int) -> int:
        return traffic_port if self.port == "traffic-port" else int(self.port)

    @classmethod
    def from_wire(cls, doc: Any) -> HealthCheck:
        doc = read.mapping(doc)
        return cls(
            protocol=read.string(doc.get("protocol")) or "HTTP",
            port=read.text(doc.get("port")) or "traffic-port",
            path=read.string(doc.get("path")) or "/",
            interval=read.positive(doc.get("interval")) or 30,
            timeout=read.positive(doc.get("timeout")) or 5,
            healthy_threshold=read.positive(doc.get("healthyThreshold")) or 5,
            unhealthy_threshold=read.positive(doc.get("unhealthyThreshold")) or 2,
            matcher=read.string(doc.get("matcher")) or "200",
        )

    def to_wire(self) -> Doc:
        return {
            "protocol": self.protocol,
            "port": self.port,
            "path": self.path,
            "interval": self.interval,
            "timeout": self.timeout,
            "healthyThreshold": self.healthy_threshold,
            "unhealthyThreshold": self.unhealthy_threshold,
            "matcher": self.matcher,
        }


@dataclass(frozen=True, slots=True)
class LbTargetGroup:
    arn: str
    protocol: str
    port: int
    health_check: HealthCheck
    targets: tuple[LbTarget, ...] = ()
    # ELB's target-group attributes, defaults filled in (``deregistration_delay.connection_termination.enabled``…)
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, key: str, default: str = "") -> str:
        return dict(self.attributes).get(key, default)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> LbTargetGroup | None:
        arn = read.string(doc.get("targetGroupArn"))
        if arn is None:
            return None
        targets = (LbTarget.from_wire(t) for t in read.mappings(doc.get("targets")))
        return cls(
            arn,
            read.string(doc.get("protocol")) or "HTTP",
            read.positive(doc.get("port")) or 80,
            HealthCheck.from_wire(doc.get("healthCheck")),
            tuple(t for t in targets if t is not None),
            read.pairs(doc.get("attributes")),
        )

    def to_wire(self) -> Doc:
        return {
            "targetGroupArn": self.arn,
            "protocol": self.protocol,
            "port": self.port,
            "healthCheck": self.health_check.to_wire(),
            "targets": [t.to_wire() for t in self.targets],
            "attributes": dict(self.attributes),
        }

    def document(self) -> Doc:
        """The members ``elb_haproxy.compile_backend`` reads, in ELB's spelling."""
        return {"TargetGroupArn": self.arn, "Protocol": self.protocol, "Port": self.port}


@dataclass(frozen=True, slots=True)
class DesiredLoadBalancer:
    arn: str
    name: str
    type: str  # application | network
    vpc: Vpc
    enis: tuple[Eni, ...] = ()
    listeners: tuple[Mapping[str, Any], ...] = ()  # ELB Listener documents
    rules: tuple[Mapping[str, Any], ...] = ()  # ELB Rule documents, each with "ListenerArn"
    target_groups: tuple[LbTargetGroup, ...] = ()

    @property
    def lb_id(self) -> str:
        """The 16 hex digits ending the ARN: what names the LB's namespace and files."""
        return self.arn.rsplit("/", 1)[-1]

    def rules_by_listener(self) -> dict[str, list[Mapping[str, Any]]]:
        out: dict[str, list[Mapping[str, Any]]] = {}
        for rule in self.rules:
            out.setdefault(str(rule.get("ListenerArn")), []).append(rule)
        return out

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredLoadBalancer | None:
        arn, vpc = read.string(doc.get("loadBalancerArn")), read.mapping(doc.get("vpc"))
        if arn is None or not read.named(vpc, "vpcId"):
            return None
        lb_id = arn.rsplit("/", 1)[-1]
        if not (len(lb_id) == 16 and all(c in "0123456789abcdef" for c in lb_id)):
            return None  # it names a namespace and a directory: nothing else is acted on
        groups = (LbTargetGroup.from_wire(g) for g in read.mappings(doc.get("targetGroups")))
        return cls(
            arn=arn,
            name=read.text(doc.get("name")),
            type=read.string(doc.get("type")) or "application",
            vpc=Vpc.from_wire(vpc),
            enis=tuple(Eni.from_wire(e) for e in read.mappings(doc.get("enis"))),
            listeners=tuple(read.mappings(doc.get("listeners"))),
            rules=tuple(read.mappings(doc.get("rules"))),
            target_groups=tuple(g for g in groups if g is not None),
        )

    def to_wire(self) -> Doc:
        return {
            "loadBalancerArn": self.arn,
            "name": self.name,
            "type": self.type,
            "vpc": self.vpc.to_wire(),
            "enis": [e.to_wire() for e in self.enis],
            "listeners": [dict(li) for li in self.listeners],
            "rules": [dict(r) for r in self.rules],
            "targetGroups": [g.to_wire() for g in self.target_groups],
        }


def _parse(value: Any) -> tuple[DesiredLoadBalancer, ...]:
    parsed = (DesiredLoadBalancer.from_wire(v) for v in read.mappings(value))
    return tuple(lb for lb in parsed if lb is not None)


def _dump(values: tuple[DesiredLoadBalancer, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[DesiredLoadBalancer, ...]:
    return ()


LOAD_BALANCERS: Section[tuple[DesiredLoadBalancer, ...]] = register_section(
    Section("loadBalancers", _parse, _dump, _none)
)


def merge_updates(held: Any, entries: Any) -> tuple[DesiredLoadBalancer, ...] | None:
    """The section held with ``entries`` (whole entries of changed load balancers, from a delta's
    ``updates``) put in place of the ones with their ARNs; None when one cannot be read or names a load
    balancer the copy does not hold (the agent then asks for the full state)."""
    current = tuple(held or ())
    by_arn: dict[str, DesiredLoadBalancer] = {}
    for doc in read.as_list(entries):
        lb = DesiredLoadBalancer.from_wire(doc) if isinstance(doc, Mapping) else None
        if lb is None:
            return None
        by_arn[lb.arn] = lb
    if not set(by_arn) <= {lb.arn for lb in current}:
        return None
    return tuple(by_arn.get(lb.arn, lb) for lb in current)


# A target change is answered with the one load balancer it changed (control/elbv2/retarget.py).
register_keyed_merge(LOAD_BALANCERS.key, merge_updates)


# ---------------------------------------------------------------------------------------------- report


@dataclass(frozen=True, slots=True)
class TargetHealthEntry:
    """One target's state as the agent's health checker concluded it (reason/code as ELB names them)."""

    target_group_arn: str
    ip: str
    port: int
    state: str  # initial | healthy | unhealthy
    reason: str | None = None
    code: str | None = None  # the HTTP status of a Target.ResponseCodeMismatch

    def to_wire(self) -> Doc:
        return {
            "targetGroupArn": self.target_group_arn,
            "id": self.ip,
            "port": self.port,
            "state": self.state,
            "reason": self.reason,
            "code": self.code,
        }

    @classmethod
    def from_wire(cls, doc: Any) -> TargetHealthEntry:
        if not isinstance(doc, Mapping):
            raise WireError("each target is an object.")
        arn, ip, state, port = doc.get("targetGroupArn"), doc.get("id"), doc.get("state"), doc.get("port")
        if not (isinstance(arn, str) and isinstance(ip, str) and isinstance(state, str)):
            raise WireError("each target needs targetGroupArn, id and state.")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise WireError("port must be an integer from 1 to 65535.")
        reason, code = doc.get("reason"), doc.get("code")
        if (reason is not None and not isinstance(reason, str)) or (
            code is not None and not isinstance(code, str)
        ):
            raise WireError("reason and code are strings.")
        return cls(arn, ip, port, state, reason, code)


@dataclass(frozen=True, slots=True)
class TargetHealthReport:
    """The body of ``POST …/target-health``."""

    targets: tuple[TargetHealthEntry, ...]

    @classmethod
    def from_wire(cls, doc: Any) -> TargetHealthReport:
        items = doc.get("targets") if isinstance(doc, Mapping) else None
        if not isinstance(items, list):
            raise WireError("targets must be a list.")
        return cls(tuple(TargetHealthEntry.from_wire(item) for item in items))

    def to_wire(self) -> Doc:
        return {"targets": [t.to_wire() for t in self.targets]}
