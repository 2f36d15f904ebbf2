"""Clusters, their tasks (run, watch live, stop) and their services."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from taskvpc.console import views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.console.pages.common import back, collect
from taskvpc.domain.errors import ClientError

# ---- home and clusters -----------------------------------------------------------------------------


async def home(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    return back(request, "/clusters")


async def clusters(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        arns = await collect(console, user, "ecs", "ListClusters", {}, "clusterArns")
        found = []
        for start in range(0, len(arns), 100):
            answer = await console.call(
                user, "ecs", "DescribeClusters", {"clusters": arns[start : start + 100]}
            )
            found.extend(answer["clusters"])
    except ClientError as error:
        return console.error_page(request, user, error)
    found.sort(key=lambda c: c["clusterName"])
    return console.page(request, user, "clusters.html", clusters=found)


async def _cluster_tasks(console: Console, user: User, cluster: str) -> list[views.TaskView]:
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        answer = await console.call(
            user, "ecs", "ListTasks", {"cluster": cluster, "desiredStatus": status, "maxResults": 100}
        )
        arns.extend(answer["taskArns"])
    if not arns:
        return []
    answer = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": arns[:100]})
    tasks = sorted(answer["tasks"], key=lambda t: float(t.get("createdAt") or 0), reverse=True)
    return [views.task_view(task) for task in tasks]


async def cluster(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    name = match["cluster"]
    try:
        answer = await console.call(user, "ecs", "DescribeClusters", {"clusters": [name]})
        if not answer["clusters"]:
            raise ClientError("ClusterNotFoundException", f"Cluster {name} not found.", 400)
        tasks = await _cluster_tasks(console, user, name)
        services = await collect(console, user, "ecs", "ListServices", {"cluster": name}, "serviceArns")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(
        request,
        user,
        "cluster.html",
        cluster=answer["clusters"][0],
        tasks=tasks,
        services=[views.resource_id(arn) for arn in services],
    )


async def cluster_tasks_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    name = match["cluster"]

    async def render() -> str:
        try:
            tasks = await _cluster_tasks(console, user, name)
        except ClientError as error:
            return console.fragment("_error_row.html", message=error.message, columns=5)
        return console.fragment("_tasks.html", tasks=tasks, cluster=name)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "tasks", stopping=console.stream_ends(user))
    return None


# ---- run task ----------------------------------------------------------------------------------------


async def _run_task_choices(console: Console, user: User) -> dict[str, Any]:
    task_definitions = await collect(
        console,
        user,
        "ecs",
        "ListTaskDefinitions",
        {"status": "ACTIVE", "sort": "DESC"},
        "taskDefinitionArns",
    )
    subnets = await collect(console, user, "ec2", "DescribeSubnets", {}, "Subnets")
    groups = await collect(console, user, "ec2", "DescribeSecurityGroups", {}, "SecurityGroups")
    vpcs = await collect(console, user, "ec2", "DescribeVpcs", {}, "Vpcs")
    default_vpc = next((v["VpcId"] for v in vpcs if v.get("IsDefault")), None)
    subnets.sort(key=lambda s: (s["VpcId"] != default_vpc, s["VpcId"], s["AvailabilityZone"], s["SubnetId"]))
    groups.sort(key=lambda g: (g["VpcId"] != default_vpc, g["VpcId"], g["GroupName"]))
    return {
        "task_definitions": [views.family_revision(arn) for arn in task_definitions],
        "subnets": subnets,
        "groups": groups,
        "default_vpc": default_vpc,
        "launch_types": views.LAUNCH_TYPES,
    }


async def run_task_form(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        choices = await _run_task_choices(console, user)
    except ClientError as error:
        return console.error_page(request, user, error)
    picked = request.query.get("taskDefinition", [""])[0]
    return console.page(
        request, user, "run_task.html", cluster=match["cluster"], error="", picked=picked, **choices
    )


async def run_task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    name = match["cluster"]
    form = request.form
    try:
        params = views.run_task_params(name, form)
        answer = await console.call(user, "ecs", "RunTask", params)
        if answer.get("failures") and not answer.get("tasks"):
            failure = answer["failures"][0]
            raise views.FormError(
                f"RunTask failed: {failure.get('reason')} {failure.get('detail', '')}".strip()
            )
    except (ClientError, views.FormError) as error:
        message = f"{error.code}: {error.message}" if isinstance(error, ClientError) else str(error)
        try:
            choices = await _run_task_choices(console, user)
        except ClientError as inner:
            return console.error_page(request, user, inner)
        picked = (form.get("taskDefinition") or [""])[0]
        return console.page(
            request, user, "run_task.html", cluster=name, error=message, picked=picked, **choices
        )
    tasks = answer["tasks"]
    if len(tasks) == 1:
        return back(request, f"/clusters/{quote(name)}/tasks/{views.resource_id(tasks[0]['taskArn'])}")
    return back(request, f"/clusters/{quote(name)}")


# ---- one task ----------------------------------------------------------------------------------------


async def _task_view(console: Console, user: User, cluster: str, task_id: str) -> views.TaskView:
    answer = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": [task_id]})
    if not answer["tasks"]:
        raise ClientError("InvalidParameterException", f"Task {task_id} not found in cluster {cluster}.", 400)
    task = answer["tasks"][0]
    eni, _ = views.eni_details(task)
    groups: tuple[str, ...] = ()
    if eni.get("networkInterfaceId"):
        try:
            found = await console.call(
                user, "ec2", "DescribeNetworkInterfaces", {"NetworkInterfaceIds": [eni["networkInterfaceId"]]}
            )
            for interface in found["NetworkInterfaces"]:
                groups = tuple(g["GroupId"] for g in interface.get("Groups", []))
        except ClientError:
            pass  # the ENI is gone once the task stopped: its groups are no longer known
    return views.task_view(task, groups)


async def task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        view = await _task_view(console, user, match["cluster"], match["task"])
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(request, user, "task.html", task=view, cluster=match["cluster"])


async def task_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    async def render() -> str:
        try:
            view = await _task_view(console, user, match["cluster"], match["task"])
        except ClientError as error:
            return console.fragment("_message.html", message=f"{error.code}: {error.message}")
        return console.fragment("_task.html", task=view, cluster=match["cluster"], user=user)

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "task", stopping=console.stream_ends(user))
    return None


async def stop_task(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    params = {"cluster": match["cluster"], "task": match["task"], "reason": "Stopped in the console"}
    try:
        await console.call(user, "ecs", "StopTask", params)
    except ClientError as error:
        return console.error_page(request, user, error)
    return back(request, f"/clusters/{quote(match['cluster'])}/tasks/{match['task']}")


# ---- services ----------------------------------------------------------------------------------------


async def _service_panel(console: Console, user: User, cluster: str, name: str) -> str:
    try:
        answer = await console.call(user, "ecs", "DescribeServices", {"cluster": cluster, "services": [name]})
        if not answer["services"]:
            raise ClientError("ServiceNotFoundException", f"Service {name} not found.", 400)
        service = answer["services"][0]
        arns = (
            await console.call(
                user, "ecs", "ListTasks", {"cluster": cluster, "serviceName": name, "maxResults": 100}
            )
        )["taskArns"]
        tasks: list[views.TaskView] = []
        if arns:
            described = await console.call(user, "ecs", "DescribeTasks", {"cluster": cluster, "tasks": arns})
            tasks = [views.task_view(t) for t in described["tasks"]]
    except ClientError as error:
        return console.fragment("_message.html", message=f"{error.code}: {error.message}")
    return console.fragment(
        "_service.html", service=views.service_view(service), tasks=tasks, cluster=cluster
    )


async def service(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    panel = await _service_panel(console, user, match["cluster"], match["service"])
    return console.page(
        request, user, "service.html", cluster=match["cluster"], name=match["service"], panel=panel
    )


async def service_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    async def render() -> str:
        return await _service_panel(console, user, match["cluster"], match["service"])

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "service", stopping=console.stream_ends(user))
    return None
