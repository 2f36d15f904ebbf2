"""The reachability matrix of a VPC's running tasks: what the security groups say, and what probes saw.

Pure: rows are the source tasks, columns each destination task's TCP container ports (its task
definition's port mappings). Each cell holds the rules' verdict for a new TCP connection from the source
task's ENI to the destination's IP and port (``netmodel.evaluator.evaluate``, the reference the nftables
compiler is tested against, with the deciding group and rule) and, when the agent probed that pair, how
the real connect ended (``agentapi.probes``): reached (connected or refused) or not (timeout). A cell
where the two disagree is flagged: the data plane is not doing what the rules say.

Rows and columns are ordered by the tasks' security groups, then task id, so tasks of a group sit together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskvpc.console.views import eni_details, resource_id
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.evaluator import Eni, Flow, GroupRules, evaluate
from taskvpc.netmodel.security_groups import Rule, rules_from_permissions


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One running task with an ENI in the VPC."""

    task_arn: str
    task_id: str
    cluster: str
    instance_id: str  # the container instance's id: whose agent owns the task's namespace
    eni_id: str
    ip: str
    groups: tuple[str, ...]
    ports: tuple[int, ...]  # TCP container ports

    @property
    def label(self) -> str:
        return self.task_id[:8]

    @property
    def href(self) -> str:
        return f"/clusters/{self.cluster}/tasks/{self.task_id}"


@dataclass(frozen=True, slots=True)
class Probed:
    outcome: str  # connected, refused, timeout, error (agentapi.probes.OUTCOMES)
    millis: float
    age: float  # seconds since the result arrived


@dataclass(frozen=True, slots=True)
class Cell:
    source: Endpoint
    destination: Endpoint
    port: int
    self_traffic: bool  # source is the destination: never leaves the namespace, nothing to probe
    allowed: bool  # by the rules
    why: str  # the deciding rules, or why nothing allowed it
    probe: Probed | None

    @property
    def reached(self) -> bool | None:
        """What the probe saw: True (the SYN got through), False (dropped), None (no usable probe)."""
        if self.probe is None or self.probe.outcome == "error":
            return None
        return self.probe.outcome in ("connected", "refused")

    @property
    def disagrees(self) -> bool:
        return self.reached is not None and self.reached != self.allowed

    @property
    def state(self) -> str:
        """A CSS class and a test's handle: allowed, denied, or mismatch."""
        if self.disagrees:
            return "mismatch"
        return "allowed" if self.allowed else "denied"


@dataclass(frozen=True, slots=True)
class Column:
    destination: Endpoint
    port: int


@dataclass(frozen=True, slots=True)
class Row:
    source: Endpoint
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Matrix:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]

    @property
    def cells(self) -> tuple[Cell, ...]:
        return tuple(c for r in self.rows for c in r.cells)

    @property
    def disagreements(self) -> int:
        return sum(1 for c in self.cells if c.disagrees)

    @property
    def probed(self) -> int:
        return sum(1 for c in self.cells if c.probe is not None)

    def to_probe(self) -> list[Cell]:
        """Every cell a probe can check (not traffic to self)."""
        return [c for c in self.cells if not c.self_traffic]


def tcp_ports(task_definition: Mapping[str, Any]) -> tuple[int, ...]:
    """The TCP container ports of a task definition's port mappings, in order, once each."""
    ports: dict[int, None] = {}
    for container in task_definition.get("containerDefinitions", []):
        for mapping in container.get("portMappings", []) or []:
            port = mapping.get("containerPort")
            if isinstance(port, int) and str(mapping.get("protocol", "tcp")).lower() == "tcp":
                ports[port] = None
    return tuple(ports)


def endpoints(
    tasks: Sequence[Mapping[str, Any]],
    enis: Sequence[Mapping[str, Any]],
    ports_by_definition: Mapping[str, tuple[int, ...]],
) -> list[Endpoint]:
    """The running tasks whose ENI is one of ``enis`` (the VPC's), with the ENI's current groups."""
    by_id = {str(e["NetworkInterfaceId"]): e for e in enis}
    found = []
    for task in tasks:
        details, _ = eni_details(task)
        eni = by_id.get(details.get("networkInterfaceId", ""))
        if eni is None or task.get("lastStatus") != "RUNNING":
            continue
        groups = tuple(sorted(str(g["GroupId"]) for g in eni.get("Groups", [])))
        found.append(
            Endpoint(
                task_arn=str(task["taskArn"]),
                task_id=resource_id(str(task["taskArn"])),
                cluster=resource_id(str(task.get("clusterArn", "default"))),
                instance_id=resource_id(str(task.get("containerInstanceArn", ""))),
                eni_id=str(eni["NetworkInterfaceId"]),
                ip=str(eni.get("PrivateIpAddress") or details.get("privateIPv4Address", "")),
                groups=groups,
                ports=ports_by_definition.get(str(task.get("taskDefinitionArn", "")), ()),
            )
        )
    return sorted(found, key=lambda e: (e.groups, e.task_id))


def group_rules(security_groups: Sequence[Mapping[str, Any]]) -> dict[str, GroupRules]:
    """DescribeSecurityGroups' groups as the evaluator's rules (a permission it cannot read adds none)."""
    out = {}
    for group in security_groups:
        sides: dict[str, tuple[Rule, ...]] = {}
        for direction, key in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress")):
            rules: list[Rule] = []
            for permission in group.get(key, []):
                try:
                    rules.extend(rules_from_permissions(direction, [permission]))  # type: ignore[arg-type]
                except (ClientError, ValueError):
                    continue
            sides[direction] = tuple(rules)
        group_id = str(group["GroupId"])
        out[group_id] = GroupRules(group_id, sides["ingress"], sides["egress"])
    return out


def describe_rule(group_id: str, rule: Rule) -> str:
    """``sg-1: tcp 80 from sg-2`` (ingress) or ``sg-1: all to 0.0.0.0/0`` (egress)."""
    if rule.protocol == "-1":
        traffic = "all"
    elif rule.from_port is None or rule.from_port == rule.to_port:
        traffic = f"{rule.protocol} {rule.from_port if rule.from_port is not None else ''}".strip()
    else:
        traffic = f"{rule.protocol} {rule.from_port}-{rule.to_port}"
    return f"{group_id}: {traffic} {'from' if rule.direction == 'ingress' else 'to'} {rule.peer}"


def matrix(
    tasks: Sequence[Endpoint],
    enis: Sequence[Mapping[str, Any]],
    groups: Mapping[str, GroupRules],
    probe_of: Callable[[str, str, int], Probed | None],
) -> Matrix:
    """The matrix of ``tasks`` against each other's ports; ``enis`` are every ENI of the VPC (a group
    reference matches the addresses of every ENI carrying that group, a load balancer's too)."""
    model = [
        Eni(
            str(e["NetworkInterfaceId"]),
            tuple(
                str(a["PrivateIpAddress"])
                for a in e.get("PrivateIpAddresses", [])
                if a.get("PrivateIpAddress")
            )
            or ((str(e["PrivateIpAddress"]),) if e.get("PrivateIpAddress") else ()),
            tuple(str(g["GroupId"]) for g in e.get("Groups", [])),
        )
        for e in enis
    ]
    columns = tuple(Column(t, port) for t in tasks for port in t.ports)
    rows = []
    for source in tasks:
        cells = []
        for column in columns:
            destination, port = column.destination, column.port
            mine = source.task_arn == destination.task_arn
            try:
                verdict = evaluate(Flow(source.ip, destination.ip, "tcp", port), model, groups)
                allowed, why = verdict.allowed, verdict.reason
                if verdict.allowed and not mine:
                    sides = [describe_rule(*s) for s in (verdict.egress, verdict.ingress) if s is not None]
                    why = "; ".join(sides) or why
            except ValueError as error:  # an address two ENIs claim: say so rather than guess
                allowed, why = False, str(error)
            probe = None if mine else probe_of(source.task_arn, destination.ip, port)
            cells.append(Cell(source, destination, port, mine, allowed, why, probe))
        rows.append(Row(source, tuple(cells)))
    return Matrix(columns, tuple(rows))
