"""The traffic graph of a VPC: its flow logs' recent records as task ENI -> task ENI edges, live."""

from __future__ import annotations

import re
import time
from typing import Any

from taskvpc.console import traffic_views as tv
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.console.pages.common import collect
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.flow_logs import parse_flow_record

_REFRESH = 5.0  # seconds between re-reads for the live page: each is a few Describe and Filter calls
_BATCH = 100  # DescribeTasks takes up to 100 tasks at once


async def _running_tasks(console: Console, user: User) -> list[Any]:
    """Every cluster's running tasks: their ENI attachments say which ENI is which task's."""
    tasks: list[Any] = []
    for cluster in await collect(console, user, "ecs", "ListClusters", {}, "clusterArns"):
        params = {"cluster": cluster, "desiredStatus": "RUNNING"}
        arns = await collect(console, user, "ecs", "ListTasks", params, "taskArns")
        for start in range(0, len(arns), _BATCH):
            batch = {"cluster": cluster, "tasks": arns[start : start + _BATCH]}
            tasks.extend((await console.call(user, "ecs", "DescribeTasks", batch))["tasks"])
    return tasks


async def _records(console: Console, user: User, read: tv.GroupRead, start_ms: int, end_ms: int) -> list[Any]:
    params: dict[str, Any] = {"logGroupName": read.log_group, "startTime": start_ms, "endTime": end_ms}
    try:
        events = await collect(console, user, "logs", "FilterLogEvents", params, "events")
    except ClientError as error:
        if error.code == "ResourceNotFoundException":  # nothing delivered yet: the first record makes it
            return []
        raise
    records = []
    for event in events:
        if read.streams is not None and event.get("logStreamName") not in read.streams:
            continue
        record = parse_flow_record(read.fields, str(event.get("message", "")))
        if record is not None:
            records.append(record)
    return records


async def _graph(console: Console, user: User, vpc: dict[str, Any], minutes: int) -> tv.TrafficGraph:
    vpc_id = vpc["VpcId"]
    by_vpc = {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]}]}
    subnets = await collect(console, user, "ec2", "DescribeSubnets", by_vpc, "Subnets")
    enis = await collect(console, user, "ec2", "DescribeNetworkInterfaces", by_vpc, "NetworkInterfaces")
    flow_logs = await collect(console, user, "ec2", "DescribeFlowLogs", {}, "FlowLogs")
    tasks = await _running_tasks(console, user)
    reads = tv.groups_to_read(
        flow_logs, vpc_id, [s["SubnetId"] for s in subnets], [e["NetworkInterfaceId"] for e in enis]
    )
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - minutes * 60_000
    records: list[Any] = []
    for read in reads:
        records.extend(await _records(console, user, read, start_ms, end_ms))
    cidrs = [c["CidrBlock"] for c in vpc.get("CidrBlockAssociationSet", []) if c.get("CidrBlock")]
    if not cidrs and vpc.get("CidrBlock"):
        cidrs = [vpc["CidrBlock"]]
    return tv.traffic_graph(records, tv.address_nodes(enis, tasks), cidrs)


def _panel(console: Console, graph: tv.TrafficGraph) -> str:
    return console.fragment(
        "_traffic.html", graph=graph, picture=tv.traffic_picture(graph), size=tv.human_bytes
    )


async def traffic(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    vpc_id = match["vpc"]
    minutes = tv.window_minutes(request.query.get("minutes", [""])[0])
    try:
        [vpc] = (await console.call(user, "ec2", "DescribeVpcs", {"VpcIds": [vpc_id]}))["Vpcs"]
        graph = await _graph(console, user, vpc, minutes)
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(
        request,
        user,
        "traffic.html",
        vpc=vpc,
        minutes=minutes,
        windows=tv.WINDOWS,
        panel=_panel(console, graph),
    )


async def traffic_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    minutes = tv.window_minutes(request.query.get("minutes", [""])[0])
    vpc: list[dict[str, Any]] = []

    async def render() -> str:
        try:
            if not vpc:  # looked up once: its CIDRs say which unknown addresses are the VPC's
                vpc.extend(
                    (await console.call(user, "ec2", "DescribeVpcs", {"VpcIds": [match["vpc"]]}))["Vpcs"]
                )
            return _panel(console, await _graph(console, user, vpc[0], minutes))
        except ClientError as error:
            return console.fragment("_message.html", message=f"{error.code}: {error.message}")

    assert request.send is not None and request.receive is not None
    await event_stream(
        request.send,
        request.receive,
        render,
        "traffic",
        interval=_REFRESH,
        stopping=console.stream_ends(user),
    )
    return None
