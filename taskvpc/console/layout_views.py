"""The VPC layout picture: VPC → Availability Zone → subnet → container instance → task ENIs, built from
Describe answers (EC2's VPC, subnets and ENIs; ECS's tasks and container instances) and laid out as
boxes for a server-rendered SVG. Pure: plain data in, the tree and its coordinates out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskvpc.console.views import eni_details, resource_id

NO_INSTANCE = "(no container instance)"


@dataclass(frozen=True, slots=True)
class EniBox:
    eni_id: str
    ip: str
    task_id: str  # "" for an ENI no task owns (a load balancer's, one made by hand)
    cluster: str
    status: str  # the task's last status, or the ENI's
    description: str


@dataclass(frozen=True, slots=True)
class HostBox:
    label: str  # the EC2 instance id the container instance registered with
    container_instance: str
    enis: tuple[EniBox, ...]


@dataclass(frozen=True, slots=True)
class SubnetBox:
    subnet_id: str
    cidr: str
    hosts: tuple[HostBox, ...]
    other_enis: tuple[EniBox, ...]


@dataclass(frozen=True, slots=True)
class ZoneBox:
    name: str
    subnets: tuple[SubnetBox, ...]


@dataclass(frozen=True, slots=True)
class VpcLayout:
    vpc_id: str
    cidr: str
    zones: tuple[ZoneBox, ...]


def vpc_layout(
    vpc: Mapping[str, Any],
    subnets: Sequence[Mapping[str, Any]],
    enis: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    instances: Sequence[Mapping[str, Any]],
) -> VpcLayout:
    """The tree: a task ENI sits under the container instance its task runs on, in the ENI's subnet;
    every other ENI of the subnet is listed beside the instances."""
    vpc_id = str(vpc.get("VpcId", ""))
    ec2_ids = {str(i.get("containerInstanceArn", "")): str(i.get("ec2InstanceId", "")) for i in instances}
    by_eni: dict[str, Mapping[str, Any]] = {}
    for described in tasks:
        details, _ = eni_details(described)
        if details.get("networkInterfaceId"):
            by_eni[details["networkInterfaceId"]] = described
    zones: dict[str, list[SubnetBox]] = {}
    for subnet in sorted(subnets, key=lambda s: (str(s.get("AvailabilityZone")), str(s.get("SubnetId")))):
        if subnet.get("VpcId", vpc_id) != vpc_id:
            continue
        subnet_id = str(subnet.get("SubnetId", ""))
        hosts: dict[str, list[EniBox]] = {}
        others: list[EniBox] = []
        for eni in sorted(
            (e for e in enis if e.get("SubnetId") == subnet_id), key=lambda e: str(e.get("PrivateIpAddress"))
        ):
            eni_id = str(eni.get("NetworkInterfaceId", ""))
            task = by_eni.get(eni_id)
            if task is None:
                others.append(
                    EniBox(
                        eni_id,
                        str(eni.get("PrivateIpAddress", "")),
                        "",
                        "",
                        str(eni.get("Status", "")),
                        str(eni.get("Description", "")),
                    )
                )
                continue
            box = EniBox(
                eni_id,
                str(eni.get("PrivateIpAddress", "")),
                resource_id(str(task.get("taskArn", ""))),
                resource_id(str(task.get("clusterArn", ""))),
                str(task.get("lastStatus", "")),
                str(eni.get("Description", "")),
            )
            hosts.setdefault(str(task.get("containerInstanceArn") or ""), []).append(box)
        zones.setdefault(str(subnet.get("AvailabilityZone", "")), []).append(
            SubnetBox(
                subnet_id,
                str(subnet.get("CidrBlock", "")),
                tuple(
                    HostBox(
                        ec2_ids.get(arn) or (resource_id(arn) if arn else NO_INSTANCE),
                        resource_id(arn),
                        tuple(boxes),
                    )
                    for arn, boxes in sorted(hosts.items(), key=lambda item: ec2_ids.get(item[0]) or item[0])
                ),
                tuple(others),
            )
        )
    return VpcLayout(
        vpc_id, str(vpc.get("CidrBlock", "")), tuple(ZoneBox(name, tuple(s)) for name, s in zones.items())
    )


# ---- the picture ---------------------------------------------------------------------------------------

LINE = 18  # one ENI's line
PAD = 10
CHAR = 7.5  # the width of a character at the picture's 12-13 px fonts, a little generous
MIN_ZONE_WIDTH = 260
COLUMNS = 3  # zones per row: a region's six zones make two rows rather than one very wide picture


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    width: int
    height: int
    kind: str  # vpc, zone, subnet, host: the SVG class that colours it


@dataclass(frozen=True, slots=True)
class Label:
    x: int
    y: int
    text: str
    kind: str  # title, eni, other
    href: str = ""  # a console path (without the /console prefix) the label links to


@dataclass(frozen=True, slots=True)
class Picture:
    width: int
    height: int
    rects: tuple[Rect, ...]
    labels: tuple[Label, ...]


def eni_text(eni: EniBox) -> str:
    owner = f"task {eni.task_id[:8]}… {eni.status}" if eni.task_id else (eni.description or eni.status)
    return f"{eni.eni_id} {eni.ip} · {owner}"


def subnet_text(subnet: SubnetBox) -> str:
    return f"{subnet.subnet_id} · {subnet.cidr}"


def zone_width(layout: VpcLayout) -> int:
    """Wide enough for the longest line inside a zone (an ENI's, indented 26 px, with a margin)."""
    texts = [subnet_text(s) for z in layout.zones for s in z.subnets]
    texts += [h.label for z in layout.zones for s in z.subnets for h in s.hosts]
    texts += [eni_text(e) for z in layout.zones for s in z.subnets for h in s.hosts for e in h.enis]
    texts += [eni_text(e) for z in layout.zones for s in z.subnets for e in s.other_enis]
    longest = max((len(t) for t in texts), default=0)
    return max(MIN_ZONE_WIDTH, int(longest * CHAR) + 48)


def _host_height(host: HostBox) -> int:
    return LINE + 6 + LINE * max(1, len(host.enis)) + 4


def _subnet_height(subnet: SubnetBox) -> int:
    inner = sum(_host_height(h) + 6 for h in subnet.hosts) + LINE * len(subnet.other_enis)
    return LINE + 8 + max(inner, LINE) + PAD


def _zone_height(zone: ZoneBox) -> int:
    return LINE + 10 + sum(_subnet_height(s) + PAD for s in zone.subnets) + PAD


def picture(layout: VpcLayout) -> Picture:
    """Zones side by side inside the VPC (COLUMNS to a row), subnets stacked in their zone, instances stacked in their
    subnet, one text line per ENI (a task's links to its page)."""
    rects: list[Rect] = []
    labels: list[Label] = []
    width_of_zone = zone_width(layout)
    rows = [layout.zones[i : i + COLUMNS] for i in range(0, len(layout.zones), COLUMNS)]
    row_heights = [max(_zone_height(z) for z in row) for row in rows] or [LINE * 2]
    title = f"{layout.vpc_id} · {layout.cidr}"
    columns = max(1, min(COLUMNS, len(layout.zones)))
    width = max(PAD + columns * (width_of_zone + PAD), int(len(title) * CHAR) + 2 * PAD)
    top = 2 * LINE
    height = top + sum(h + PAD for h in row_heights)
    rects.append(Rect(0, 0, width, height, "vpc"))
    labels.append(Label(PAD, LINE + 4, title, "title"))
    if not layout.zones:
        labels.append(Label(PAD, top + LINE, "No subnets in this VPC.", "other"))
    for index, zone in enumerate(layout.zones):
        row = index // COLUMNS
        x = PAD + (index % COLUMNS) * (width_of_zone + PAD)
        zone_top = top + sum(h + PAD for h in row_heights[:row])
        rects.append(Rect(x, zone_top, width_of_zone, row_heights[row], "zone"))
        labels.append(Label(x + PAD, zone_top + LINE, zone.name, "title"))
        y = zone_top + LINE + 10
        for subnet in zone.subnets:
            sub_height = _subnet_height(subnet)
            sx, sw = x + PAD, width_of_zone - 2 * PAD
            rects.append(Rect(sx, y, sw, sub_height, "subnet"))
            labels.append(Label(sx + 8, y + LINE, subnet_text(subnet), "title"))
            inner = y + LINE + 8
            for host in subnet.hosts:
                host_height = _host_height(host)
                rects.append(Rect(sx + 8, inner, sw - 16, host_height, "host"))
                labels.append(Label(sx + 16, inner + LINE, host.label, "title"))
                line = inner + LINE + 6
                for eni in host.enis:
                    href = f"/clusters/{eni.cluster}/tasks/{eni.task_id}" if eni.task_id else ""
                    labels.append(Label(sx + 16, line + LINE - 4, eni_text(eni), "eni", href))
                    line += LINE
                inner += host_height + 6
            for eni in subnet.other_enis:
                labels.append(Label(sx + 8, inner + LINE - 4, eni_text(eni), "other"))
                inner += LINE
            if not subnet.hosts and not subnet.other_enis:
                labels.append(Label(sx + 8, inner + LINE - 4, "no ENIs", "other"))
            y += sub_height + PAD
    return Picture(width, height, tuple(rects), tuple(labels))
