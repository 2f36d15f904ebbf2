"""The traffic graph of a VPC: which task ENIs talk to which, from its flow logs' records.

Pure: DescribeFlowLogs' entries say which log groups to read and with which format; the records read back
(netmodel.flow_logs.parse_flow_record) become edges between nodes - one node per task ENI or other ENI of
the VPC, one per load balancer, and one "outside" node for every address no ENI of the VPC has - summed
per (source, destination, action); the nodes are laid out on a circle for a server-rendered SVG.

Each ENI's flow log reports its own view of a flow, so traffic between two captured ENIs is counted by
both: an edge's totals are the sum of the records read, as the log group holds them.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskvpc.console.views import eni_details, resource_id
from taskvpc.netmodel.flow_logs import LogFormatError, parse_log_format

OUTSIDE = "outside"
FORMER = "former"
WINDOWS = (5, 15, 60, 180)  # minutes the page offers; 15 by default
DEFAULT_WINDOW = 15


def window_minutes(asked: str) -> int:
    """The window the query asks for, if it is one the page offers (else the default)."""
    return int(asked) if asked.isdigit() and int(asked) in WINDOWS else DEFAULT_WINDOW


# ---- which log groups hold the VPC's records ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupRead:
    log_group: str
    fields: tuple[str, ...]
    streams: frozenset[str] | None  # only these streams (ENI ids) when the group also has other VPCs'


def groups_to_read(
    flow_logs: Sequence[Mapping[str, Any]], vpc_id: str, subnet_ids: Iterable[str], eni_ids: Iterable[str]
) -> list[GroupRead]:
    """One read per (log group, format) of the flow logs made on the VPC, one of its subnets or ENIs; a
    group some other resource's flow log also writes to is read for this VPC's ENIs' streams only."""
    enis = frozenset(eni_ids)
    ours = {vpc_id, *subnet_ids, *enis}
    shared = {
        str(f.get("LogGroupName", ""))
        for f in flow_logs
        if f.get("ResourceId") not in ours
        and f.get("LogDestinationType", "cloud-watch-logs") == "cloud-watch-logs"
    }
    reads: dict[tuple[str, tuple[str, ...]], GroupRead] = {}
    for flow_log in sorted(flow_logs, key=lambda f: str(f.get("FlowLogId", ""))):
        group = str(flow_log.get("LogGroupName") or "")
        if flow_log.get("ResourceId") not in ours or not group:
            continue
        try:
            fields = parse_log_format(flow_log.get("LogFormat") or None)
        except LogFormatError:
            continue
        reads.setdefault((group, fields), GroupRead(group, fields, enis if group in shared else None))
    return list(reads.values())


# ---- nodes and edges ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    key: str  # the ENI id, "lb:<name>", FORMER or OUTSIDE
    label: str
    detail: str  # the address(es), or what the node groups
    kind: str  # task, eni, lb, former, outside
    href: str = ""  # a console path (without the /console prefix)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # node keys
    destination: str
    action: str  # ACCEPT | REJECT
    bytes: int
    packets: int
    records: int


@dataclass(frozen=True, slots=True)
class TrafficGraph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    records: int  # the traffic records the edges sum (NODATA/SKIPDATA and unreadable lines left out)

    def node(self, key: str) -> Node:
        return next(node for node in self.nodes if node.key == key)


def address_nodes(enis: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]) -> dict[str, Node]:
    """Each private address of the VPC's ENIs -> its node: a task's ENI by task, a load balancer's ENIs
    as one node per load balancer, any other ENI by its id."""
    by_eni: dict[str, Mapping[str, Any]] = {}
    for described in tasks:
        details, _ = eni_details(described)
        if details.get("networkInterfaceId"):
            by_eni[details["networkInterfaceId"]] = described
    found: dict[str, Node] = {}
    for eni in enis:
        eni_id = str(eni.get("NetworkInterfaceId", ""))
        addresses = [
            str(a["PrivateIpAddress"]) for a in eni.get("PrivateIpAddresses", []) if a.get("PrivateIpAddress")
        ]
        if eni.get("PrivateIpAddress") and eni["PrivateIpAddress"] not in addresses:
            addresses.insert(0, str(eni["PrivateIpAddress"]))
        description = str(eni.get("Description", ""))
        task = by_eni.get(eni_id)
        if task is not None:
            task_id, cluster = (
                resource_id(str(task.get("taskArn", ""))),
                resource_id(str(task.get("clusterArn", ""))),
            )
            node = Node(
                eni_id,
                f"task {task_id[:8]}",
                " ".join(addresses),
                "task",
                f"/clusters/{cluster}/tasks/{task_id}",
            )
        elif description.startswith("ELB "):  # "ELB app/<name>/<id>", as the load balancer's ENIs say
            parts = description.split(" ", 1)[1].split("/")
            name = parts[1] if len(parts) == 3 else description
            node = Node(f"lb:{name}", f"LB {name}", "load balancer", "lb", f"/load-balancers/{name}")
        else:
            node = Node(eni_id, eni_id, " ".join(addresses), "eni")
        for address in addresses:
            found[address] = node
    return found


def traffic_graph(
    records: Iterable[Mapping[str, str]], addresses: Mapping[str, Node], vpc_cidrs: Sequence[str] = ()
) -> TrafficGraph:
    """Records (field -> value) summed per (source node, destination node, action); a node per endpoint
    seen, task ENIs first. An address of the VPC's CIDRs no ENI has now (a stopped task's, say) joins
    one "former ENIs" node, any other address the "outside" one. Records without both addresses, an
    action and counts are not traffic."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    nodes: dict[str, Node] = {}
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in vpc_cidrs]
    outside = Node(OUTSIDE, "outside", "not an ENI of the VPC", "outside")
    former = Node(FORMER, "former ENIs", "VPC addresses no ENI has now", "former")

    def node_of(address: str) -> Node:
        known = addresses.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return outside
        return former if any(ip in network for network in networks) else outside

    counted = 0
    for record in records:
        if record.get("log-status", "OK") != "OK":
            continue
        src, dst, action = record.get("srcaddr"), record.get("dstaddr"), record.get("action")
        size, packets = _count(record.get("bytes")), _count(record.get("packets"))
        if not src or not dst or action not in ("ACCEPT", "REJECT") or size is None or packets is None:
            continue
        ends = [node_of(src), node_of(dst)]
        for node in ends:
            nodes.setdefault(node.key, node)
        total = totals.setdefault((ends[0].key, ends[1].key, action), [0, 0, 0])
        total[0] += size
        total[1] += packets
        total[2] += 1
        counted += 1
    order = {"task": 0, "eni": 1, "lb": 2, "former": 3, "outside": 4}
    edges = tuple(
        Edge(src, dst, action, total[0], total[1], total[2])
        for (src, dst, action), total in sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    )
    return TrafficGraph(
        tuple(sorted(nodes.values(), key=lambda n: (order[n.kind], n.label, n.key))), edges, counted
    )


def _count(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


# ---- the picture ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dot:
    node: Node
    x: int
    y: int
    anchor: str  # start | end: a label reads away from the circle's centre, right or left of its node

    @property
    def label_x(self) -> int:
        return self.x + RADIUS + 4 if self.anchor == "start" else self.x - RADIUS - 4


@dataclass(frozen=True, slots=True)
class Line:
    edge: Edge
    x1: int
    y1: int
    x2: int
    y2: int
    label_x: int
    label_y: int
    path: str  # an SVG path: a curve, so A->B and B->A (and ACCEPT beside REJECT) do not overlap


@dataclass(frozen=True, slots=True)
class TrafficPicture:
    width: int
    height: int
    dots: tuple[Dot, ...]
    lines: tuple[Line, ...]


RADIUS = 16  # a node's circle
_BEND = {"ACCEPT": 0.12, "REJECT": 0.24}  # how far a curve bows out, per action


def traffic_picture(graph: TrafficGraph) -> TrafficPicture:
    """Nodes evenly on a circle (wide enough for their labels); each edge a curve from source to
    destination that bows to its right, a node's traffic to itself a small loop above it."""
    count = len(graph.nodes)
    ring = max(170, int(count * 60 / math.pi))
    longest = max((len(text) for n in graph.nodes for text in (n.label, n.detail)), default=0)
    margin = max(80, RADIUS + 12 + int(longest * 7.5))  # room for the labels beside the outermost nodes
    size = 2 * (ring + margin)
    centre = size // 2
    at: dict[str, Dot] = {}
    for index, node in enumerate(graph.nodes):
        angle = -math.pi / 2 + 2 * math.pi * index / max(1, count)
        x, y = centre + round(ring * math.cos(angle)), centre + round(ring * math.sin(angle))
        at[node.key] = Dot(node, x, y, "end" if x < centre - 1 else "start")
    lines: list[Line] = []
    for edge in graph.edges:
        a, b = at[edge.source], at[edge.destination]
        if a is b:
            path = f"M {a.x} {a.y} C {a.x - 45} {a.y - 75}, {a.x + 45} {a.y - 75}, {a.x} {a.y}"
            lines.append(Line(edge, a.x, a.y, b.x, b.y, a.x, a.y - 60, path))
            continue
        dx, dy = b.x - a.x, b.y - a.y
        bend = _BEND.get(edge.action, 0.12)
        cx, cy = (a.x + b.x) / 2 - dy * bend, (a.y + b.y) / 2 + dx * bend
        label_x, label_y = round((a.x + b.x) / 4 + cx / 2), round((a.y + b.y) / 4 + cy / 2)
        path = f"M {a.x} {a.y} Q {round(cx)} {round(cy)} {b.x} {b.y}"
        lines.append(Line(edge, a.x, a.y, b.x, b.y, label_x, label_y, path))
    return TrafficPicture(size, size, tuple(at.values()), tuple(lines))
