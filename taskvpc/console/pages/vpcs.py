"""VPCs and the layout picture of one: its zones, subnets, container instances and task ENIs."""

from __future__ import annotations

import re
from typing import Any

from taskvpc.console import layout_views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response
from taskvpc.console.pages.common import collect
from taskvpc.domain.errors import ClientError

_BATCH = 100  # DescribeTasks and DescribeContainerInstances take up to 100 at once


async def vpcs(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        found = await collect(console, user, "ec2", "DescribeVpcs", {}, "Vpcs")
    except ClientError as error:
        return console.error_page(request, user, error)
    found.sort(key=lambda v: (not v.get("IsDefault"), v["VpcId"]))
    return console.page(request, user, "vpcs.html", vpcs=found)


async def _tasks_and_instances(console: Console, user: User) -> tuple[list[Any], list[Any]]:
    """Every cluster's running tasks and container instances (the layout places the one on the other)."""
    tasks: list[Any] = []
    instances: list[Any] = []
    for cluster in await collect(console, user, "ecs", "ListClusters", {}, "clusterArns"):
        params = {"cluster": cluster, "desiredStatus": "RUNNING"}
        arns = await collect(console, user, "ecs", "ListTasks", params, "taskArns")
        for start in range(0, len(arns), _BATCH):
            answer = await console.call(
                user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": arns[start : start + _BATCH]}
            )
            tasks.extend(answer["tasks"])
        arns = await collect(
            console, user, "ecs", "ListContainerInstances", {"cluster": cluster}, "containerInstanceArns"
        )
        for start in range(0, len(arns), _BATCH):
            answer = await console.call(
                user,
                "ecs",
                "DescribeContainerInstances",
                {"cluster": cluster, "containerInstances": arns[start : start + _BATCH]},
            )
            instances.extend(answer["containerInstances"])
    return tasks, instances


async def vpc(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    vpc_id = match["vpc"]
    by_vpc = {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]}]}
    try:
        [found] = (await console.call(user, "ec2", "DescribeVpcs", {"VpcIds": [vpc_id]}))["Vpcs"]
        subnets = await collect(console, user, "ec2", "DescribeSubnets", by_vpc, "Subnets")
        enis = await collect(console, user, "ec2", "DescribeNetworkInterfaces", by_vpc, "NetworkInterfaces")
        tasks, instances = await _tasks_and_instances(console, user)
    except ClientError as error:
        return console.error_page(request, user, error)
    layout = layout_views.vpc_layout(found, subnets, enis, tasks, instances)
    return console.page(
        request, user, "vpc.html", vpc=found, layout=layout, picture=layout_views.picture(layout)
    )
