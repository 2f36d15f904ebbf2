"""The reachability matrix of a VPC's running tasks: the rules' verdict per (source task, destination port)
and what real probes from the tasks' namespaces saw (control/probes.py, agent/probes.py), live.

The matrix is built from the user's own Describe calls, so it shows only what the user may read; "Run
probes" then asks the agents to connect from those tasks to those ports (a TCP handshake each, nothing
sent), the same question the page already answers from the rules.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from taskvpc.console import reachability_views as rv
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.console.pages.common import back, collect
from taskvpc.control import probes
from taskvpc.domain.errors import ClientError

_BATCH = 100  # DescribeTasks takes up to 100 tasks at once
_WAIT = 5.0  # seconds "Run probes" waits for the agents' answers before showing the page
_REFRESH = 1.0  # seconds between re-reads of the live panel


async def _running_tasks(console: Console, user: User) -> list[Any]:
    tasks: list[Any] = []
    for cluster in await collect(console, user, "ecs", "ListClusters", {}, "clusterArns"):
        params = {"cluster": cluster, "desiredStatus": "RUNNING"}
        arns = await collect(console, user, "ecs", "ListTasks", params, "taskArns")
        for start in range(0, len(arns), _BATCH):
            batch = {"cluster": cluster, "tasks": arns[start : start + _BATCH]}
            tasks.extend((await console.call(user, "ecs", "DescribeTasks", batch))["tasks"])
    return tasks


def _probe_of(now: float) -> Any:
    def lookup(task_arn: str, address: str, port: int) -> rv.Probed | None:
        found = probes.BOOK.latest(task_arn, address, port)
        if found is None:
            return None
        return rv.Probed(found.result.outcome, found.result.millis, max(0.0, now - found.at))

    return lookup


async def _matrix(console: Console, user: User, vpc_id: str) -> tuple[rv.Matrix, dict[str, str]]:
    """The matrix and the VPC's group names by id (the page labels groups by name)."""
    by_vpc = {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]}]}
    enis = await collect(console, user, "ec2", "DescribeNetworkInterfaces", by_vpc, "NetworkInterfaces")
    groups = await collect(console, user, "ec2", "DescribeSecurityGroups", by_vpc, "SecurityGroups")
    tasks = await _running_tasks(console, user)
    ports: dict[str, tuple[int, ...]] = {}
    for arn in sorted({str(t.get("taskDefinitionArn", "")) for t in tasks} - {""}):
        answer = await console.call(user, "ecs", "DescribeTaskDefinition", {"taskDefinition": arn})
        ports[arn] = rv.tcp_ports(answer["taskDefinition"])
    endpoints = rv.endpoints(tasks, enis, ports)
    found = rv.matrix(endpoints, enis, rv.group_rules(groups), _probe_of(console.control_plane.clock()))
    return found, {str(g["GroupId"]): str(g.get("GroupName", g["GroupId"])) for g in groups}


def _panel(console: Console, user: User, vpc_id: str, found: tuple[rv.Matrix, dict[str, str]]) -> str:
    matrix, names = found
    return console.fragment("_reachability.html", user=user, vpc_id=vpc_id, matrix=matrix, names=names)


async def reachability(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    vpc_id = match["vpc"]
    try:
        [vpc] = (await console.call(user, "ec2", "DescribeVpcs", {"VpcIds": [vpc_id]}))["Vpcs"]
        found = await _matrix(console, user, vpc_id)
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(
        request, user, "reachability.html", vpc=vpc, panel=_panel(console, user, vpc_id, found)
    )


async def run_probes(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    """Ask the agents to probe every cell of the matrix the user sees, wait (briefly) for the answers."""
    vpc_id = match["vpc"]
    try:
        found = await _matrix(console, user, vpc_id)
    except ClientError as error:
        return console.error_page(request, user, error)
    wanted = [
        (c.source.instance_id, c.source.task_arn, c.destination.ip, c.port)
        for c in found[0].to_probe()
        if c.source.instance_id
    ]
    plane = console.control_plane
    ctx = plane.context(console.region, plane.clock())
    asked = await plane.call(probes.ask, ctx, wanted)
    plane.notifier.wake(ctx.notify)
    ids = [p.probe_id for p in asked]
    deadline = time.monotonic() + _WAIT
    while probes.BOOK.waiting(ids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return back(request, f"/vpcs/{vpc_id}/reachability")


async def reachability_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    vpc_id = match["vpc"]

    async def render() -> str:
        try:
            return _panel(console, user, vpc_id, await _matrix(console, user, vpc_id))
        except ClientError as error:
            return console.fragment("_message.html", message=f"{error.code}: {error.message}")

    assert request.send is not None and request.receive is not None
    await event_stream(
        request.send,
        request.receive,
        render,
        "reachability",
        interval=_REFRESH,
        stopping=console.stream_ends(user),
    )
    return None
